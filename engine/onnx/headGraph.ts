import { HEAD_ACCURACY_LEVEL } from "../model/compression.js";
import type { ModelConfig } from "../model/config.js";
import type { QuantizedFactor } from "../model/projection.js";
import type { ExternalDataFile } from "./externalData.js";
import { ElemType, GraphBuilder } from "./graphBuilder.js";
import { detach } from "../memory.js";
import { transposeColumns } from "./linalg.js";
import { rmsNorm } from "./ops.js";

export const HeadIO = { hidden: "hidden_in", logits: "logits" } as const;

/** Rows [first, first+count) of the (vocab, hidden) LM head as float32: (count, hidden), read into `into` where the reader can. */
export type RowReader = (first: number, count: number, into: Float32Array) => Float32Array;

/** LM-head rows transposed per block: the block's source and transposed copies are all that is held at once. */
const LM_HEAD_BLOCK_ROWS = 4096;

/**
 * The client's output graph: final RMSNorm, then the LM head: (T, hidden) → (T, vocab) logits.
 * A dense head is needed as (hidden, vocab): it is transposed a block of vocabulary rows at a time,
 * and with `external` each block goes straight to the data file. A quantized head (vocab rows of
 * blocks along hidden) is already the layout MatMulNBits reads, at HEAD_ACCURACY_LEVEL.
 */
export function buildHeadGraph(c: ModelConfig, finalNorm: Float32Array, lmHead: RowReader | QuantizedFactor, external?: ExternalDataFile): Uint8Array {
  const g = new GraphBuilder(external);
  const H = c.hiddenSize;
  const V = c.vocabSize;
  const x = g.input(HeadIO.hidden, ElemType.FLOAT, ["T", H]);
  const eps = g.floatInit("rms_eps", [], new Float32Array([c.rmsNormEps]));
  const normed = rmsNorm(g, x, g.floatInit("final_norm", [H], finalNorm), eps);
  if (typeof lmHead !== "function") {
    const f = lmHead;
    if (f.rows !== V || f.cols !== H) throw new Error(`quantized LM head is ${f.rows}×${f.cols}, expected ${V}×${H}`);
    const blocks = Math.ceil(H / f.blockSize);
    const packed = g.uint8Init("lm_head.qw", [V, blocks, (f.blockSize * f.bits) / 8], f.packed);
    const scales = g.floatInit("lm_head.qs", [V * blocks], f.scales);
    const attrs = { K: H, N: V, bits: f.bits, block_size: f.blockSize, accuracy_level: HEAD_ACCURACY_LEVEL };
    g.output(g.op("MatMulNBits", [normed, packed, scales], attrs, "com.microsoft"), HeadIO.logits, ElemType.FLOAT, ["T", V]);
    return g.serialize("efed_head", { "": 17, "com.microsoft": 1 });
  }
  const w = g.floatInitFilled("lm_head", [H, V], (write) => {
    // one block's source and transposed buffers serve every block: fresh pages cost more than the
    // transpose, and blocks dropped for the garbage collector raised the load's peak
    const rows = new Float32Array(Math.min(LM_HEAD_BLOCK_ROWS, V) * H);
    const transposed = new Float32Array(rows.length);
    for (let v0 = 0; v0 < V; v0 += LM_HEAD_BLOCK_ROWS) {
      const n = Math.min(LM_HEAD_BLOCK_ROWS, V - v0);
      const block = transposeColumns(lmHead(v0, n, rows), n, H, 0, H, transposed); // (H, n): columns v0…v0+n of each row of the result
      for (let h = 0; h < H; h++) write(h * V + v0, block.subarray(h * n, (h + 1) * n));
    }
    // freed now, not when the garbage collector gets to them: ONNX Runtime's copy of the head comes next
    detach(rows.buffer);
    detach(transposed.buffer);
  });
  g.output(g.op("MatMul", [normed, w]), HeadIO.logits, ElemType.FLOAT, ["T", V]);
  return g.serialize("efed_head");
}
