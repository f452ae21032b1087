import type { ModelConfig } from "../model/config.js";
import { ElemType, GraphBuilder } from "./graphBuilder.js";
import { transpose } from "./linalg.js";
import { rmsNorm } from "./ops.js";

export const HeadIO = { hidden: "hidden_in", logits: "logits" } as const;

/** The client's output graph: final RMSNorm, then the LM head: (T, hidden) → (T, vocab) logits. */
export function buildHeadGraph(c: ModelConfig, finalNorm: Float32Array, lmHead: Float32Array): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input(HeadIO.hidden, ElemType.FLOAT, ["T", c.hiddenSize]);
  const eps = g.floatInit("rms_eps", [], new Float32Array([c.rmsNormEps]));
  const normed = rmsNorm(g, x, g.floatInit("final_norm", [c.hiddenSize], finalNorm), eps);
  const w = g.floatInit("lm_head", [c.hiddenSize, c.vocabSize], transpose(lmHead, c.vocabSize, c.hiddenSize));
  g.output(g.op("MatMul", [normed, w]), HeadIO.logits, ElemType.FLOAT, ["T", c.vocabSize]);
  return g.serialize("efed_head");
}
