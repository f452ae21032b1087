import { writeFileSync } from "node:fs";
import ort from "onnxruntime-node";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { ExternalDataFile } from "../onnx/externalData.js";
import { ScratchDir } from "./scratch.js";

export interface RuntimeOptions {
  /** Intra-op threads of each ONNX Runtime session (default 1). */
  threads?: number;
  /**
   * Whether idle intra-op threads spin waiting for work (default true). Spinning makes one busy
   * session faster, but two multi-threaded sessions taking turns in one process (a client's shards
   * and head) steal each other's cores while they spin.
   */
  spinning?: boolean;
  /**
   * Directory under which a private scratch directory for the graph files is made (default
   * os.tmpdir()); see ScratchDir. Holds one copy of the weights (float32) while the session lives.
   */
  scratchDir?: string;
  /**
   * Whether ONNX Runtime repacks MatMul weights into its kernel's layout at load (default true).
   * Packed weights are a private copy (anonymous memory), and while a tensor is packed its file
   * pages and its packed copy coexist, so the load peaks at the weights plus the largest tensor.
   * Without packing, weights are used straight from the mapped graph data file (page cache: loaded
   * lazily, shared, evictable), but matrix products are slower (see docs/benchmarks.md "Engine").
   */
  prepack?: boolean;
}

/**
 * The one place ONNX Runtime sessions are created. The graph optimization level is pinned:
 * different fusions give different rounding, and eFed's sharded == unsharded and verifier
 * re-execution guarantees depend on every party running the same arithmetic.
 */
export const GRAPH_OPTIMIZATION_LEVEL = "all" as const;

/** A session over a model in memory (small graphs) or in a file (with its external data beside it). */
export async function createSession(model: Uint8Array | string, options: RuntimeOptions = {}): Promise<ort.InferenceSession> {
  const threads = options.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) {
    throw new InvalidArgumentError(`threads must be an integer in 1..256, got ${threads}`);
  }
  if (options.prepack !== undefined && typeof options.prepack !== "boolean") {
    throw new InvalidArgumentError(`prepack must be a boolean, got ${String(options.prepack)}`);
  }
  const session: Record<string, unknown> = { intra_op: { allow_spinning: options.spinning === false ? "0" : "1" } };
  if (options.prepack === false) session.disable_prepacking = "1";
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: GRAPH_OPTIMIZATION_LEVEL,
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    logSeverityLevel: 3,
    extra: { session },
  };
  // Two overloads (buffer, path): TypeScript does not pick one for the union.
  return typeof model === "string" ? ort.InferenceSession.create(model, sessionOptions) : ort.InferenceSession.create(model, sessionOptions);
}

/** A session and the scratch directory holding its graph files (remove it after releasing the session). */
export interface FileSession {
  session: ort.InferenceSession;
  scratch: ScratchDir;
}

/**
 * Builds a graph whose weights go to a data file as they are added (`build` receives the file),
 * writes the graph beside it in a fresh private scratch directory and lets ONNX Runtime load both
 * from there: the weights never sit in a protobuf in memory, and the runtime reads them itself.
 */
export async function createFileSession(build: (data: ExternalDataFile) => Uint8Array, options: RuntimeOptions = {}): Promise<FileSession> {
  const scratch = ScratchDir.create(options.scratchDir);
  try {
    const data = new ExternalDataFile(scratch.file("weights.bin"));
    let graph: Uint8Array;
    try {
      graph = build(data);
    } finally {
      data.close();
    }
    const modelPath = scratch.file("model.onnx");
    writeFileSync(modelPath, graph, { mode: 0o600, flag: "wx" });
    const session = await createSession(modelPath, options);
    // ORT has read (or mapped) everything at session creation; removing the files now means a
    // process killed later (no exit hook runs) leaves nothing behind. A mapping outlives the unlink.
    scratch.remove();
    return { session, scratch };
  } catch (err) {
    scratch.remove();
    throw err;
  }
}

export { ort };
