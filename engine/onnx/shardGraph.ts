import { ropeInverseFrequencies, type ModelConfig } from "../model/config.js";
import { LEGACY_ACCURACY_LEVEL, type QuantAccuracyLevel } from "../model/compression.js";
import type { Factor, Projection } from "../model/projection.js";
import type { LayerWeights } from "../model/weights.js";
import type { ExternalDataFile } from "./externalData.js";
import { ElemType, GraphBuilder } from "./graphBuilder.js";
import { transposeInChunks } from "./linalg.js";
import { rmsNorm } from "./ops.js";

/**
 * How attention and the KV cache are expressed in the graph:
 * - "ops": standard ONNX operators; RoPE angles and the causal mask are inputs; the cache is
 *   (kvHeads, length, headDim) per layer and grows by Concat (a copy per step).
 * - "gqa": ONNX Runtime's fused com.microsoft.GroupQueryAttention (RoPE, causal mask, cache
 *   append and grouped heads in one kernel); the cache is (1, kvHeads, length, headDim).
 */
export type AttentionKind = "ops" | "gqa";

/** Names of a shard graph's inputs and outputs: the contract between graph and runner. */
export const ShardIO = {
  hidden: "hidden_in", // (T, hidden)       hidden states of the T new tokens
  cos: "rope_cos", // (T, headDim)           "ops": cos of each token's rotary angles
  sin: "rope_sin", // (T, headDim)           "ops": sin of the same
  mask: "attn_bias", // (T, past+T)          "ops": 0 where a query may attend, -inf where not
  seqlensK: "seqlens_k", // (B) int32         "gqa": per sequence past+T-1, index of its last token
  totalLength: "total_seq_len", // () int32  "gqa": the longest past+T
  batchShape: "batch_shape", // (3) int64     "gqa": [B, T, -1]: one sequence of T tokens, or B sequences of one
  hiddenOut: "hidden_out", // (T, hidden)
  pastKey: (layer: number) => `past_key_${layer}`,
  pastValue: (layer: number) => `past_value_${layer}`,
  presentKey: (layer: number) => `present_key_${layer}`,
  presentValue: (layer: number) => `present_value_${layer}`,
  /** "gqa": (B, kvHeads, 1, headDim) each sequence's key at its last position (seqlens_k), rotated as in the present. */
  newKey: (layer: number) => `new_key_${layer}`,
  newValue: (layer: number) => `new_value_${layer}`,
  /** With `probes`: the input of a layer's projections at `point` (calibration for compression). */
  probe: (layer: number, point: ProbePoint) => `probe_${layer}_${point}`,
} as const;

/**
 * Where a layer's projections read their input: q/k/v share "attn" (the normed hidden states), o
 * reads "o" (the attention context), gate/up share "mlp" (normed), down reads "down" (SwiGLU).
 */
export const PROBE_POINTS = ["attn", "o", "mlp", "down"] as const;
export type ProbePoint = (typeof PROBE_POINTS)[number];

export interface ShardGraphOptions {
  attention?: AttentionKind | undefined;
  /** Also output every projection's input (ShardIO.probe), for calibrating compression. */
  probes?: boolean | undefined;
  /** MatMulNBits accuracy level of quantized factors: the variant's (`accuracyLevelOf`); default LEGACY_ACCURACY_LEVEL. */
  quantAccuracyLevel?: QuantAccuracyLevel | undefined;
  /** Write the weights to this file (ONNX external data) as each layer is built, instead of into the protobuf. */
  externalData?: ExternalDataFile | undefined;
}

/** Longest sequence the "gqa" graph precomputes rotary tables for. */
export const GQA_MAX_POSITIONS = 32_768;

export function gqaMaxPositions(c: ModelConfig): number {
  return Math.min(c.maxPositionEmbeddings, GQA_MAX_POSITIONS);
}

/**
 * The ONNX graph of layers [first, last) of a Llama-family model, one sequence. Activations are
 * 2-D (tokens, hidden); the KV cache is carried as graph inputs and outputs. Layers are fetched
 * one at a time through `loadLayer`, so only one layer's checkpoint tensors are alive at once
 * beside the graph's own (transposed) copies, and with `externalData` not even those.
 */
export function buildShardGraph(
  c: ModelConfig,
  first: number,
  last: number,
  loadLayer: (layer: number) => LayerWeights,
  options: ShardGraphOptions = {},
): Uint8Array {
  const attention = options.attention ?? "ops";
  const g = new GraphBuilder(options.externalData);
  const H = c.hiddenSize;
  const D = c.headDim;
  const nH = c.numHeads;

  let x = g.input(ShardIO.hidden, ElemType.FLOAT, ["T", H]);
  const eps = g.floatInit("rms_eps", [], new Float32Array([c.rmsNormEps]));
  const linear = (v: string, name: string, w: Projection, bias?: Float32Array): string => {
    const y = applyProjection(g, v, name, w, options.quantAccuracyLevel ?? LEGACY_ACCURACY_LEVEL);
    return bias === undefined ? y : g.op("Add", [y, g.floatInit(`${name}.b`, [w.factors[0]!.rows], bias)]);
  };
  const probe = (layer: number, point: ProbePoint, value: string, width: number): void => {
    if (options.probes === true) g.output(value, ShardIO.probe(layer, point), ElemType.FLOAT, ["T", width]);
  };
  const attend = attention === "gqa" ? gqaAttention(g, c) : opsAttention(g, c);

  for (let layer = first; layer < last; layer++) {
    const w = loadLayer(layer);
    const p = `l${layer}`;
    // --- attention
    const n1 = rmsNorm(g, x, g.floatInit(`${p}.input_norm`, [H], w.inputNorm), eps);
    probe(layer, "attn", n1, H);
    const q = linear(n1, `${p}.q`, w.q, w.qBias); // (T, nH·D)
    const k = linear(n1, `${p}.k`, w.k, w.kBias); // (T, kvH·D)
    const v = linear(n1, `${p}.v`, w.v, w.vBias);
    const context = attend(layer, q, k, v); // (T, nH·D)
    probe(layer, "o", context, nH * D);
    x = g.op("Add", [x, linear(context, `${p}.o`, w.o, w.oBias)]);

    // --- MLP (SwiGLU)
    const n2 = rmsNorm(g, x, g.floatInit(`${p}.post_norm`, [H], w.postNorm), eps);
    probe(layer, "mlp", n2, H);
    const gate = linear(n2, `${p}.gate`, w.gate);
    const up = linear(n2, `${p}.up`, w.up);
    const act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up]);
    probe(layer, "down", act, c.intermediateSize);
    x = g.op("Add", [x, linear(act, `${p}.down`, w.down)]);
  }

  g.output(x, ShardIO.hiddenOut, ElemType.FLOAT, ["T", H]);
  return g.serialize(`efed_shard_${first}_${last}`, g.usesDomain("com.microsoft") ? { "": 17, "com.microsoft": 1 } : { "": 17 });
}

/**
 * x · Wᵀ for W = F0 · F1 · …: the factors are applied right to left, so a low-rank projection is
 * two MatMuls through the (T, rank) bottleneck. Quantized factors run in ONNX Runtime's
 * MatMulNBits at the variant's accuracy level (engine/model/compression.ts): measured on a
 * 1536×576 matrix, int8 weights take 43 µs at level 4 (activations quantized to int8 per block)
 * against 1,005 µs at level 0 (float activations, no fast kernel), and int4 20 µs against 55 µs;
 * dense float32 takes 165 µs.
 */
function applyProjection(g: GraphBuilder, x: string, name: string, w: Projection, accuracyLevel: QuantAccuracyLevel): string {
  let y = x;
  for (let i = w.factors.length - 1; i >= 0; i--) {
    y = applyFactor(g, y, w.factors.length === 1 ? name : `${name}.f${i}`, w.factors[i]!, accuracyLevel);
  }
  return y;
}

function applyFactor(g: GraphBuilder, x: string, name: string, f: Factor, accuracyLevel: QuantAccuracyLevel): string {
  if (f.kind === "dense") {
    const w = g.floatInitFilled(`${name}.w`, [f.cols, f.rows], (write) => transposeInChunks(f.data, f.rows, f.cols, write));
    return g.op("MatMul", [x, w]);
  }
  const blocks = Math.ceil(f.cols / f.blockSize);
  const packed = g.uint8Init(`${name}.qw`, [f.rows, blocks, (f.blockSize * f.bits) / 8], f.packed);
  const scales = g.floatInit(`${name}.qs`, [f.rows * blocks], f.scales);
  return g.op(
    "MatMulNBits",
    [x, packed, scales],
    { K: f.cols, N: f.rows, bits: f.bits, block_size: f.blockSize, accuracy_level: accuracyLevel },
    "com.microsoft",
  );
}

type Attend = (layer: number, q: string, k: string, v: string) => string;

/**
 * Attention from standard operators. Per KV head the query heads of its group are stacked, so
 * grouped-query attention never copies keys: scores (kvH, group, T, S).
 */
function opsAttention(g: GraphBuilder, c: ModelConfig): Attend {
  const { headDim: D, numHeads: nH, numKvHeads: kvH } = c;
  const group = nH / kvH;
  const cos = g.input(ShardIO.cos, ElemType.FLOAT, ["T", D]);
  const sin = g.input(ShardIO.sin, ElemType.FLOAT, ["T", D]);
  const mask = g.input(ShardIO.mask, ElemType.FLOAT, ["T", "S"]);
  const shapeTokHeadsD = g.int64Init("shape_t_h_d", [-1, nH, D]);
  const shapeTokKvD = g.int64Init("shape_t_kv_d", [-1, kvH, D]);
  const shapeGroups = g.int64Init("shape_kv_g_t_d", [kvH, group, -1, D]);
  const shapeHeads = g.int64Init("shape_h_t_d", [nH, -1, D]);
  const shapeTokHidden = g.int64Init("shape_t_q", [-1, nH * D]);
  const splitHalves = g.int64Init("rope_split", [D / 2, D / 2]);
  const one = g.int64Init("axis_1", [1]);
  const scale = g.floatInit("attn_scale", [], new Float32Array([1 / Math.sqrt(D)]));

  // x·cos + rotate_half(x)·sin, with rotate_half(x) = [-x2, x1] over the last axis (HF convention).
  const rope = (v: string): string => {
    const [x1, x2] = g.opN("Split", [v, splitHalves], 2, { axis: -1 });
    const rotated = g.op("Concat", [g.op("Neg", [x2!]), x1!], { axis: -1 });
    return g.op("Add", [g.op("Mul", [v, cos]), g.op("Mul", [rotated, sin])]);
  };

  return (layer, q, k, v) => {
    const pastK = g.input(ShardIO.pastKey(layer), ElemType.FLOAT, [kvH, "P", D]);
    const pastV = g.input(ShardIO.pastValue(layer), ElemType.FLOAT, [kvH, "P", D]);
    const qHeads = g.op("Transpose", [g.op("Reshape", [q, shapeTokHeadsD])], { perm: [1, 0, 2] }); // (nH, T, D)
    const kHeads = g.op("Transpose", [g.op("Reshape", [k, shapeTokKvD])], { perm: [1, 0, 2] }); // (kvH, T, D)
    const vHeads = g.op("Transpose", [g.op("Reshape", [v, shapeTokKvD])], { perm: [1, 0, 2] });
    const presentK = g.op("Concat", [pastK, rope(kHeads)], { axis: 1 }); // (kvH, S, D)
    const presentV = g.op("Concat", [pastV, vHeads], { axis: 1 });
    g.output(presentK, ShardIO.presentKey(layer), ElemType.FLOAT, [kvH, "S", D]);
    g.output(presentV, ShardIO.presentValue(layer), ElemType.FLOAT, [kvH, "S", D]);

    const qGroups = g.op("Reshape", [g.op("Mul", [rope(qHeads), scale]), shapeGroups]); // (kvH, group, T, D)
    const kT = g.op("Unsqueeze", [g.op("Transpose", [presentK], { perm: [0, 2, 1] }), one]); // (kvH, 1, D, S)
    const scores = g.op("Add", [g.op("MatMul", [qGroups, kT]), mask]); // (kvH, group, T, S)
    const probs = g.op("Softmax", [scores], { axis: -1 });
    const ctx = g.op("MatMul", [probs, g.op("Unsqueeze", [presentV, one])]); // (kvH, group, T, D)
    const ctxTok = g.op("Transpose", [g.op("Reshape", [ctx, shapeHeads])], { perm: [1, 0, 2] }); // (T, nH, D)
    return g.op("Reshape", [ctxTok, shapeTokHidden]);
  };
}

/** Attention through ONNX Runtime's fused GroupQueryAttention kernel (CPU supports it for float32). */
function gqaAttention(g: GraphBuilder, c: ModelConfig): Attend {
  const { headDim: D, numHeads: nH, numKvHeads: kvH } = c;
  const seqlensK = g.input(ShardIO.seqlensK, ElemType.INT32, ["B"]);
  const total = g.input(ShardIO.totalLength, ElemType.INT32, []);
  // Rows of hidden states are either T tokens of one sequence ([1, T, ·]) or the next token of B
  // sequences ([B, 1, ·], batched decode, caches padded to the longest with seqlens_k per sequence).
  const batchShape = g.input(ShardIO.batchShape, ElemType.INT64, [3]);
  const rowsShape = g.int64Init("shape_rows_q", [-1, nH * D]);
  // Rotary tables (positions × D/2): angles in float32 as HF computes them.
  const positions = gqaMaxPositions(c);
  const inv = ropeInverseFrequencies(c);
  const cosTable = new Float32Array(positions * (D / 2));
  const sinTable = new Float32Array(positions * (D / 2));
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < D / 2; i++) {
      const angle = Math.fround(p * Math.fround(inv[i]!));
      cosTable[p * (D / 2) + i] = Math.cos(angle);
      sinTable[p * (D / 2) + i] = Math.sin(angle);
    }
  }
  const cosCache = g.floatInit("rope_cos_cache", [positions, D / 2], cosTable);
  const sinCache = g.floatInit("rope_sin_cache", [positions, D / 2], sinTable);
  // Where each sequence's last key and value sit in the present, (B, kvH, 1, D): a runner that keeps
  // caches elsewhere (Shard.runSlots over a KvSlotPool) fetches these rows instead of the whole present.
  const lastIndex = g.op("Expand", [
    g.op("Reshape", [g.op("Cast", [seqlensK], { to: ElemType.INT64 }), g.int64Init("shape_b_1_1_1", [-1, 1, 1, 1])]),
    g.int64Init("shape_1_kv_1_d", [1, kvH, 1, D]),
  ]);

  return (layer, q, k, v) => {
    const pastK = g.input(ShardIO.pastKey(layer), ElemType.FLOAT, ["B", kvH, "P", D]);
    const pastV = g.input(ShardIO.pastValue(layer), ElemType.FLOAT, ["B", kvH, "P", D]);
    const [out, presentK, presentV] = g.opN(
      "GroupQueryAttention",
      [
        g.op("Reshape", [q, batchShape]),
        g.op("Reshape", [k, batchShape]),
        g.op("Reshape", [v, batchShape]),
        pastK,
        pastV,
        seqlensK,
        total,
        cosCache,
        sinCache,
      ],
      3,
      { num_heads: nH, kv_num_heads: kvH, do_rotary: 1, rotary_interleaved: 0 },
      "com.microsoft",
    );
    g.output(presentK!, ShardIO.presentKey(layer), ElemType.FLOAT, ["B", kvH, "S", D]);
    g.output(presentV!, ShardIO.presentValue(layer), ElemType.FLOAT, ["B", kvH, "S", D]);
    g.output(g.op("GatherElements", [presentK!, lastIndex], { axis: 2 }), ShardIO.newKey(layer), ElemType.FLOAT, ["B", kvH, 1, D]);
    g.output(g.op("GatherElements", [presentV!, lastIndex], { axis: 2 }), ShardIO.newValue(layer), ElemType.FLOAT, ["B", kvH, 1, D]);
    return g.op("Reshape", [out!, rowsShape]);
  };
}
