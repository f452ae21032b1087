import { detach } from "../memory.js";
import { loadProjection } from "./projectionLoader.js";
import type { ModelConfig } from "./config.js";
import type { TensorSource } from "./tensorSource.js";
import { blocksOf, projectionBytes, type Projection, type QuantBits } from "./projection.js";
import { FactorNames } from "./compression.js";

/** Names of the seven projections of a layer, in Hugging Face naming (without ".weight"). */
export const PROJECTIONS = {
  q: "self_attn.q_proj",
  k: "self_attn.k_proj",
  v: "self_attn.v_proj",
  o: "self_attn.o_proj",
  gate: "mlp.gate_proj",
  up: "mlp.up_proj",
  down: "mlp.down_proj",
} as const;
export type ProjectionKey = keyof typeof PROJECTIONS;

/** (out, in) of each projection of a layer of `c`. */
export function projectionShapes(c: ModelConfig): Record<ProjectionKey, [number, number]> {
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const H = c.hiddenSize;
  const I = c.intermediateSize;
  return { q: [qDim, H], k: [kvDim, H], v: [kvDim, H], o: [H, qDim], gate: [I, H], up: [I, H], down: [H, I] };
}

/** One transformer layer's weights, float32, in Hugging Face layout: projections are (out, in), possibly factored. */
export interface LayerWeights {
  inputNorm: Float32Array; // (hidden)
  q: Projection; // (numHeads·headDim, hidden)
  k: Projection; // (numKvHeads·headDim, hidden)
  v: Projection; // (numKvHeads·headDim, hidden)
  o: Projection; // (hidden, numHeads·headDim)
  qBias: Float32Array | undefined; // (numHeads·headDim)
  kBias: Float32Array | undefined; // (numKvHeads·headDim)
  vBias: Float32Array | undefined; // (numKvHeads·headDim)
  oBias: Float32Array | undefined; // (hidden)
  postNorm: Float32Array; // (hidden)
  gate: Projection; // (intermediate, hidden)
  up: Projection; // (intermediate, hidden)
  down: Projection; // (hidden, intermediate)
}

/** The client's weights: token embeddings, final norm and LM head. */
export interface HeadWeights {
  embed: Float32Array; // (vocab, hidden)
  finalNorm: Float32Array; // (hidden)
  lmHead: Float32Array; // (vocab, hidden); the same array as `embed` when tied
}

export function layerPrefix(layer: number): string {
  return `model.layers.${layer}.`;
}

/**
 * Float32 buffers for the dense projections of one layer at a time, reused by the next layer loaded
 * with them (the layers of a model share their shapes): loading a shard touches fresh memory for one
 * layer's projections, not for every layer's. A fresh page costs a fault, on these VMs ~15 µs per
 * 4 KiB, more than reading and widening its values, and a dropped layer's arrays stay resident until
 * the garbage collector gets to them. A layer loaded with them is valid only until the next one is.
 */
export class LayerBuffers {
  private readonly buffers = new Map<string, Float32Array>();

  /** The buffer of `slot` with exactly `length` values (the one it had, when that is its length). */
  take(slot: string, length: number): Float32Array {
    let b = this.buffers.get(slot);
    if (b?.length !== length) this.buffers.set(slot, (b = new Float32Array(length)));
    return b;
  }

  /**
   * Frees every buffer now (they read as empty afterwards), rather than whenever the garbage
   * collector would: ONNX Runtime's copy of the weights is about to be allocated.
   */
  release(): void {
    for (const b of this.buffers.values()) detach(b.buffer);
    this.buffers.clear();
  }
}

/**
 * Layer `layer`'s weights as float32; with `buffers`, its dense projections are read into them (and
 * overwritten by the next layer loaded with the same buffers).
 */
export function loadLayerWeights(model: TensorSource, layer: number, buffers?: LayerBuffers): LayerWeights {
  const c = model.config;
  const p = layerPrefix(layer);
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const bias = (name: string, n: number, present: boolean): Float32Array | undefined =>
    present ? model.tensor(`${p}self_attn.${name}.bias`, [n]) : undefined;
  const shapes = projectionShapes(c);
  const projection = (key: ProjectionKey): Projection =>
    loadProjection(model, p + PROJECTIONS[key], ...shapes[key], buffers && ((factor, length) => buffers.take(`${key}.${factor}`, length)));
  return {
    inputNorm: model.tensor(`${p}input_layernorm.weight`, [c.hiddenSize]),
    q: projection("q"),
    k: projection("k"),
    v: projection("v"),
    o: projection("o"),
    qBias: bias("q_proj", qDim, c.qkvBias),
    kBias: bias("k_proj", kvDim, c.qkvBias),
    vBias: bias("v_proj", kvDim, c.qkvBias),
    oBias: bias("o_proj", c.hiddenSize, c.oBias),
    postNorm: model.tensor(`${p}post_attention_layernorm.weight`, [c.hiddenSize]),
    gate: projection("gate"),
    up: projection("up"),
    down: projection("down"),
  };
}

export const EMBED_TOKENS = "model.embed_tokens.weight";

/** The tensor the LM head reads: lm_head.weight, or the embeddings when tied. */
export function lmHeadTensorName(c: ModelConfig): string {
  // Some tied checkpoints still ship lm_head.weight; when tied, the embedding is authoritative.
  return c.tieWordEmbeddings ? EMBED_TOKENS : "lm_head.weight";
}

/** Bits of the LM head when it is stored quantized (compression HEAD_MATRICES), else undefined. */
export function lmHeadBits(model: TensorSource): QuantBits | undefined {
  return model.compression.matrices?.[FactorNames.base(lmHeadTensorName(model.config))]?.bits;
}

/** A (vocab, hidden) matrix of the head as float32: as stored, or dequantized. */
export function readHeadMatrix(model: TensorSource, tensorName: string): Float32Array {
  const c = model.config;
  const rows = model.openRows(tensorName, [c.vocabSize, c.hiddenSize]);
  try {
    return rows.readSpan(0, c.vocabSize);
  } finally {
    rows.close();
  }
}

export function loadHeadWeights(model: TensorSource): HeadWeights {
  const c = model.config;
  const embed = readHeadMatrix(model, EMBED_TOKENS);
  const lmHead = c.tieWordEmbeddings ? embed : readHeadMatrix(model, lmHeadTensorName(c));
  return { embed, finalNorm: model.tensor("model.norm.weight", [c.hiddenSize]), lmHead };
}

/** Tensor names and shapes a Llama-family checkpoint of `c` must hold (for writers and checks). */
export function expectedTensors(c: ModelConfig): Map<string, number[]> {
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const m = new Map<string, number[]>([["model.embed_tokens.weight", [c.vocabSize, c.hiddenSize]]]);
  for (let l = 0; l < c.numLayers; l++) {
    const p = layerPrefix(l);
    m.set(`${p}input_layernorm.weight`, [c.hiddenSize]);
    m.set(`${p}self_attn.q_proj.weight`, [qDim, c.hiddenSize]);
    m.set(`${p}self_attn.k_proj.weight`, [kvDim, c.hiddenSize]);
    m.set(`${p}self_attn.v_proj.weight`, [kvDim, c.hiddenSize]);
    m.set(`${p}self_attn.o_proj.weight`, [c.hiddenSize, qDim]);
    if (c.qkvBias) {
      m.set(`${p}self_attn.q_proj.bias`, [qDim]);
      m.set(`${p}self_attn.k_proj.bias`, [kvDim]);
      m.set(`${p}self_attn.v_proj.bias`, [kvDim]);
    }
    if (c.oBias) m.set(`${p}self_attn.o_proj.bias`, [c.hiddenSize]);
    m.set(`${p}post_attention_layernorm.weight`, [c.hiddenSize]);
    m.set(`${p}mlp.gate_proj.weight`, [c.intermediateSize, c.hiddenSize]);
    m.set(`${p}mlp.up_proj.weight`, [c.intermediateSize, c.hiddenSize]);
    m.set(`${p}mlp.down_proj.weight`, [c.hiddenSize, c.intermediateSize]);
  }
  m.set("model.norm.weight", [c.hiddenSize]);
  if (!c.tieWordEmbeddings) m.set("lm_head.weight", [c.vocabSize, c.hiddenSize]);
  return m;
}

/**
 * Bytes of weights one decode step reads, as the engine holds them (float32 dense factors, packed
 * codes and scales for quantized ones): every layer's projections, norms and biases, the final
 * norm and LM head, and one embedding row. Reads every layer once.
 */
export function decodeWeightBytes(model: TensorSource): number {
  const c = model.config;
  const bits = lmHeadBits(model);
  const blocks = c.vocabSize * blocksOf(c.hiddenSize, model.compression.block_size ?? 1);
  const lmHead = bits === undefined ? 4 * c.vocabSize * c.hiddenSize : (blocks * model.compression.block_size! * bits) / 8 + 4 * blocks;
  let bytes = lmHead + 4 * 2 * c.hiddenSize; // LM head, final norm, one embedding row (as float32)
  for (let l = 0; l < c.numLayers; l++) bytes += layerWeightBytes(loadLayerWeights(model, l));
  return bytes;
}

/** Bytes of one layer's weights as the graph holds them. */
export function layerWeightBytes(w: LayerWeights): number {
  let bytes = 0;
  for (const key of Object.keys(PROJECTIONS) as ProjectionKey[]) bytes += projectionBytes(w[key]);
  for (const v of [w.inputNorm, w.postNorm, w.qBias, w.kBias, w.vBias, w.oBias]) bytes += 4 * (v?.length ?? 0);
  return bytes;
}
