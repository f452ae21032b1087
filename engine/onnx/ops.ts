import type { GraphBuilder } from "./graphBuilder.js";

/** RMSNorm over the last axis: x / sqrt(mean(x²) + eps) · weight (eps and weight are graph values). */
export function rmsNorm(g: GraphBuilder, x: string, weight: string, eps: string): string {
  const meanSquare = g.op("ReduceMean", [g.op("Mul", [x, x])], { axes: [-1], keepdims: 1 });
  const inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [meanSquare, eps])])]);
  return g.op("Mul", [g.op("Mul", [x, inv]), weight]);
}
