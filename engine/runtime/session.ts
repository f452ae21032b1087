import ort from "onnxruntime-node";
import { InvalidArgumentError } from "../../protocol/errors.js";

export interface RuntimeOptions {
  /** Intra-op threads of each ONNX Runtime session (default 1). */
  threads?: number;
  /**
   * Whether idle intra-op threads spin waiting for work (default true). Spinning makes one busy
   * session faster, but two multi-threaded sessions taking turns in one process (a client's shards
   * and head) steal each other's cores while they spin.
   */
  spinning?: boolean;
}

/**
 * The one place ONNX Runtime sessions are created. The graph optimization level is pinned:
 * different fusions give different rounding, and eFed's sharded == unsharded and verifier
 * re-execution guarantees depend on every party running the same arithmetic.
 */
export const GRAPH_OPTIMIZATION_LEVEL = "all" as const;

export async function createSession(model: Uint8Array, options: RuntimeOptions = {}): Promise<ort.InferenceSession> {
  const threads = options.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) {
    throw new InvalidArgumentError(`threads must be an integer in 1..256, got ${threads}`);
  }
  return ort.InferenceSession.create(model, {
    graphOptimizationLevel: GRAPH_OPTIMIZATION_LEVEL,
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    logSeverityLevel: 3,
    extra: { session: { intra_op: { allow_spinning: options.spinning === false ? "0" : "1" } } },
  });
}

export { ort };
