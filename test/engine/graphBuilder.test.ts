import { createRequire } from "node:module";
import type { onnx as OnnxTypes } from "onnx-proto";
import { describe, expect, it } from "vitest";
import { ElemType, GraphBuilder } from "../../engine/onnx/graphBuilder.js";
import { createSession, ort } from "../../engine/runtime/session.js";

const { onnx } = createRequire(import.meta.url)("onnx-proto") as { onnx: typeof OnnxTypes };

describe("GraphBuilder outputs", () => {
  it("a computed value becomes the output itself (no Identity copy), later uses of its old name read it; inputs and repeated outputs go through an Identity", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", ElemType.FLOAT, [2]);
    const squared = g.op("Mul", [x, x]);
    g.output(squared, "squared", ElemType.FLOAT, [2]);
    g.output(g.op("Add", [squared, x]), "sum", ElemType.FLOAT, [2]); // `squared` was renamed by now
    g.output(x, "x_again", ElemType.FLOAT, [2]);
    g.output(squared, "squared_again", ElemType.FLOAT, [2]);
    const bytes = g.serialize("outputs");

    const graph = onnx.ModelProto.decode(bytes).graph!;
    expect(graph.node!.map((n) => [n.opType, [...n.input!], [...n.output!]])).toEqual([
      ["Mul", ["x", "x"], ["squared"]],
      ["Add", ["squared", "x"], ["sum"]],
      ["Identity", ["x"], ["x_again"]],
      ["Identity", ["squared"], ["squared_again"]],
    ]);

    const session = await createSession(bytes);
    try {
      const out = await session.run({ x: new ort.Tensor("float32", Float32Array.of(1.5, -2), [2]) });
      expect(Object.fromEntries(Object.entries(out).map(([k, t]) => [k, [...(t.data as Float32Array)]]))).toEqual({
        squared: [2.25, 4],
        sum: [3.75, 2],
        x_again: [1.5, -2],
        squared_again: [2.25, 4],
      });
    } finally {
      await session.release();
    }
  });
});
