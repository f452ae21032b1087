import type { ModelConfig } from "../model/config.js";
import type { LayerWeights } from "../model/weights.js";
import { ElemType, GraphBuilder } from "./graphBuilder.js";
import { transpose } from "./linalg.js";
import { rmsNorm } from "./ops.js";

/** Names of a shard graph's inputs and outputs: the contract between graph and runner. */
export const ShardIO = {
  hidden: "hidden_in", // (T, hidden)       hidden states of the T new tokens
  cos: "rope_cos", // (T, headDim)           cos of each token's rotary angles
  sin: "rope_sin", // (T, headDim)           sin of the same
  mask: "attn_bias", // (T, past+T)          0 where a query may attend, -inf where not
  hiddenOut: "hidden_out", // (T, hidden)
  pastKey: (layer: number) => `past_key_${layer}`, // (kvHeads, past, headDim)
  pastValue: (layer: number) => `past_value_${layer}`,
  presentKey: (layer: number) => `present_key_${layer}`, // (kvHeads, past+T, headDim)
  presentValue: (layer: number) => `present_value_${layer}`,
} as const;

/**
 * The ONNX graph of layers [first, last) of a Llama-family model, one sequence, with its KV cache
 * carried as graph inputs/outputs. Activations are 2-D (tokens, hidden); attention is computed per
 * KV head with the query heads of its group stacked, so grouped-query attention never copies keys.
 * Rotary angles and the causal mask come in as inputs (computed once per step by the runner), so
 * the graph has no position logic of its own.
 */
export function buildShardGraph(c: ModelConfig, first: number, layers: readonly LayerWeights[]): Uint8Array {
  const g = new GraphBuilder();
  const H = c.hiddenSize;
  const D = c.headDim;
  const nH = c.numHeads;
  const kvH = c.numKvHeads;
  const group = nH / kvH;

  let x = g.input(ShardIO.hidden, ElemType.FLOAT, ["T", H]);
  const cos = g.input(ShardIO.cos, ElemType.FLOAT, ["T", D]);
  const sin = g.input(ShardIO.sin, ElemType.FLOAT, ["T", D]);
  const mask = g.input(ShardIO.mask, ElemType.FLOAT, ["T", "S"]);

  // Shapes and constants shared by every layer.
  const shapeTokHeadsD = g.int64Init("shape_t_h_d", [-1, nH, D]);
  const shapeTokKvD = g.int64Init("shape_t_kv_d", [-1, kvH, D]);
  const shapeGroups = g.int64Init("shape_kv_g_t_d", [kvH, group, -1, D]);
  const shapeHeads = g.int64Init("shape_h_t_d", [nH, -1, D]);
  const shapeTokHidden = g.int64Init("shape_t_q", [-1, nH * D]);
  const splitHalves = g.int64Init("rope_split", [D / 2, D / 2]);
  const one = g.int64Init("axis_1", [1]);
  const scale = g.floatInit("attn_scale", [], new Float32Array([1 / Math.sqrt(D)]));
  const eps = g.floatInit("rms_eps", [], new Float32Array([c.rmsNormEps]));

  // x·cos + rotate_half(x)·sin, with rotate_half(x) = [-x2, x1] over the last axis (HF convention).
  const rope = (v: string): string => {
    const [x1, x2] = g.opN("Split", [v, splitHalves], 2, { axis: -1 });
    const rotated = g.op("Concat", [g.op("Neg", [x2!]), x1!], { axis: -1 });
    return g.op("Add", [g.op("Mul", [v, cos]), g.op("Mul", [rotated, sin])]);
  };
  const linear = (v: string, name: string, w: Float32Array, outDim: number, inDim: number, bias?: Float32Array): string => {
    const y = g.op("MatMul", [v, g.floatInit(`${name}.w`, [inDim, outDim], transpose(w, outDim, inDim))]);
    return bias === undefined ? y : g.op("Add", [y, g.floatInit(`${name}.b`, [outDim], bias)]);
  };

  layers.forEach((w, i) => {
    const layer = first + i;
    const p = `l${layer}`;
    const pastK = g.input(ShardIO.pastKey(layer), ElemType.FLOAT, [kvH, "P", D]);
    const pastV = g.input(ShardIO.pastValue(layer), ElemType.FLOAT, [kvH, "P", D]);

    // --- attention
    const n1 = rmsNorm(g, x, g.floatInit(`${p}.input_norm`, [H], w.inputNorm), eps);
    const q = linear(n1, `${p}.q`, w.q, nH * D, H, w.qBias); // (T, nH·D)
    const k = linear(n1, `${p}.k`, w.k, kvH * D, H, w.kBias); // (T, kvH·D)
    const v = linear(n1, `${p}.v`, w.v, kvH * D, H, w.vBias);
    const qHeads = g.op("Transpose", [g.op("Reshape", [q, shapeTokHeadsD])], { perm: [1, 0, 2] }); // (nH, T, D)
    const kHeads = g.op("Transpose", [g.op("Reshape", [k, shapeTokKvD])], { perm: [1, 0, 2] }); // (kvH, T, D)
    const vHeads = g.op("Transpose", [g.op("Reshape", [v, shapeTokKvD])], { perm: [1, 0, 2] });
    const qRot = g.op("Mul", [rope(qHeads), scale]);
    const presentK = g.op("Concat", [pastK, rope(kHeads)], { axis: 1 }); // (kvH, S, D)
    const presentV = g.op("Concat", [pastV, vHeads], { axis: 1 });
    g.output(presentK, ShardIO.presentKey(layer), ElemType.FLOAT, [kvH, "S", D]);
    g.output(presentV, ShardIO.presentValue(layer), ElemType.FLOAT, [kvH, "S", D]);

    const qGroups = g.op("Reshape", [qRot, shapeGroups]); // (kvH, group, T, D)
    const kT = g.op("Unsqueeze", [g.op("Transpose", [presentK], { perm: [0, 2, 1] }), one]); // (kvH, 1, D, S)
    const scores = g.op("Add", [g.op("MatMul", [qGroups, kT]), mask]); // (kvH, group, T, S)
    const probs = g.op("Softmax", [scores], { axis: -1 });
    const ctx = g.op("MatMul", [probs, g.op("Unsqueeze", [presentV, one])]); // (kvH, group, T, D)
    const ctxTok = g.op("Transpose", [g.op("Reshape", [ctx, shapeHeads])], { perm: [1, 0, 2] }); // (T, nH, D)
    const attn = linear(g.op("Reshape", [ctxTok, shapeTokHidden]), `${p}.o`, w.o, H, nH * D, w.oBias);
    x = g.op("Add", [x, attn]);

    // --- MLP (SwiGLU)
    const n2 = rmsNorm(g, x, g.floatInit(`${p}.post_norm`, [H], w.postNorm), eps);
    const gate = linear(n2, `${p}.gate`, w.gate, c.intermediateSize, H);
    const up = linear(n2, `${p}.up`, w.up, c.intermediateSize, H);
    const act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up]);
    x = g.op("Add", [x, linear(act, `${p}.down`, w.down, H, c.intermediateSize)]);
  });

  g.output(x, ShardIO.hiddenOut, ElemType.FLOAT, ["T", H]);
  return g.serialize(`efed_shard_${first}_${first + layers.length}`);
}
