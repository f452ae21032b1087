import { EngineError } from "../errors.js";
import type { ModelConfig } from "../model/config.js";
import type { ModelDirectory } from "../model/modelDir.js";
import { loadProjection } from "../model/projectionLoader.js";
import type { QuantizedFactor } from "../model/projection.js";
import type { MatrixRows } from "../model/tensorRows.js";
import { FactorNames } from "../model/compression.js";
import { EMBED_TOKENS, lmHeadBits, lmHeadTensorName } from "../model/weights.js";
import { HeadIO, buildHeadGraph } from "../onnx/headGraph.js";
import type { ScratchDir } from "./scratch.js";
import { createFileSession, ort, type RuntimeOptions } from "./session.js";

/** Embedding tables up to this many bytes (as float32) are held in memory; larger ones are read per row. */
export const RESIDENT_EMBEDDING_BYTES = 32 * 1024 * 1024;

/**
 * What a client runs locally: the token embeddings in, the final norm and LM head out. The LM head
 * lives in ONNX Runtime; embedding rows are read from the model file when asked for, so the
 * (vocab, hidden) table is not held a second time in JS memory.
 */
export class Head {
  readonly config: ModelConfig;
  private readonly embedding: MatrixRows; // (vocab, hidden), on disk unless small
  private readonly session: ort.InferenceSession;
  private readonly scratch: ScratchDir;

  private constructor(config: ModelConfig, embedding: MatrixRows, session: ort.InferenceSession, scratch: ScratchDir) {
    this.config = config;
    this.embedding = embedding;
    this.session = session;
    this.scratch = scratch;
  }

  /**
   * Reads only the final norm and LM head from `model` now, embedding rows as they are needed.
   * The LM head stays packed (ORT's default): unpacked, a single row takes the vector-matrix kernel
   * and several rows the matrix kernel, whose sums round differently, and batched logits must
   * equal one-at-a-time logits bit for bit (BatchingHead).
   */
  static async load(model: ModelDirectory, options: RuntimeOptions = {}): Promise<Head> {
    const c = model.config;
    const embedding = model.openRows(EMBED_TOKENS, [c.vocabSize, c.hiddenSize]);
    // A dense LM head is read a block of rows at a time too: it is transposed on its way to the graph.
    // A quantized one goes in as stored.
    const quantized = lmHeadBits(model) !== undefined;
    const lmHead = c.tieWordEmbeddings || quantized ? embedding : model.openRows(lmHeadTensorName(c), [c.vocabSize, c.hiddenSize]);
    try {
      const weights = quantized
        ? (loadProjection(model, FactorNames.base(lmHeadTensorName(c)), c.vocabSize, c.hiddenSize).factors[0] as QuantizedFactor)
        : (first: number, count: number, into: Float32Array): Float32Array => lmHead.readSpan(first, count, into);
      const { session, scratch } = await createFileSession(
        (data) => buildHeadGraph(c, model.tensor("model.norm.weight", [c.hiddenSize]), weights, data),
        options,
      );
      // A small table stays in memory: reading it row by row would slow a prefill more than it saves.
      if (c.vocabSize * c.hiddenSize * 4 <= RESIDENT_EMBEDDING_BYTES) embedding.keepInMemory();
      return new Head(c, embedding, session, scratch);
    } catch (err) {
      embedding.close();
      throw err;
    } finally {
      if (lmHead !== embedding) lmHead.close();
    }
  }

  /** Embedding rows of `ids`: (ids.length, hidden). */
  embed(ids: readonly number[]): Float32Array {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new EngineError("BAD_TOKEN", `token id ${id} is outside the vocabulary 0..${this.config.vocabSize - 1}`);
      }
    }
    return this.embedding.read(ids);
  }

  /** Logits (T, vocab) for hidden states (T, hidden). */
  async logits(hidden: Float32Array): Promise<Float32Array> {
    const T = hidden.length / this.config.hiddenSize;
    const out = await this.session.run({ [HeadIO.hidden]: new ort.Tensor("float32", hidden, [T, this.config.hiddenSize]) });
    return out[HeadIO.logits]!.data as Float32Array;
  }

  async release(): Promise<void> {
    try {
      await this.session.release();
    } finally {
      this.embedding.close();
      this.scratch.remove();
    }
  }
}
