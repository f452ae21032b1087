import { EngineError } from "../errors.js";
import type { ModelConfig } from "../model/config.js";
import type { ModelDirectory } from "../model/modelDir.js";
import { loadHeadWeights } from "../model/weights.js";
import { HeadIO, buildHeadGraph } from "../onnx/headGraph.js";
import { createSession, ort, type RuntimeOptions } from "./session.js";

/** What a client runs locally: the token embeddings in, the final norm and LM head out. */
export class Head {
  readonly config: ModelConfig;
  private readonly embedding: Float32Array; // (vocab, hidden)
  private readonly session: ort.InferenceSession;

  private constructor(config: ModelConfig, embedding: Float32Array, session: ort.InferenceSession) {
    this.config = config;
    this.embedding = embedding;
    this.session = session;
  }

  /** Reads only the embeddings, final norm and LM head from `model`. */
  static async load(model: ModelDirectory, options: RuntimeOptions = {}): Promise<Head> {
    const w = loadHeadWeights(model);
    const session = await createSession(buildHeadGraph(model.config, w.finalNorm, w.lmHead), options);
    return new Head(model.config, w.embed, session);
  }

  /** Embedding rows of `ids`: (ids.length, hidden). */
  embed(ids: readonly number[]): Float32Array {
    const H = this.config.hiddenSize;
    const out = new Float32Array(ids.length * H);
    ids.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new EngineError("BAD_TOKEN", `token id ${id} is outside the vocabulary 0..${this.config.vocabSize - 1}`);
      }
      out.set(this.embedding.subarray(id * H, (id + 1) * H), t * H);
    });
    return out;
  }

  /** Logits (T, vocab) for hidden states (T, hidden). */
  async logits(hidden: Float32Array): Promise<Float32Array> {
    const T = hidden.length / this.config.hiddenSize;
    const out = await this.session.run({ [HeadIO.hidden]: new ort.Tensor("float32", hidden, [T, this.config.hiddenSize]) });
    return out[HeadIO.logits]!.data as Float32Array;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
