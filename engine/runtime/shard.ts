import { EngineError } from "../errors.js";
import type { ModelConfig } from "../model/config.js";
import type { ModelDirectory } from "../model/modelDir.js";
import { accuracyLevelOf } from "../model/compression.js";
import { LayerBuffers, layerWeightBytes, loadLayerWeights, type LayerWeights } from "../model/weights.js";
import { PROBE_POINTS, ShardIO, buildShardGraph, gqaMaxPositions, type AttentionKind } from "../onnx/shardGraph.js";
import { KvSlotPool, type KvCache, type KvSlotPoolOptions } from "./kvSlots.js";
import { causalMask, ropeTables } from "./rope.js";
import type { ScratchDir } from "./scratch.js";
import { createFileSession, ort, type RuntimeOptions } from "./session.js";

export type { KvCache } from "./kvSlots.js";

/** Options of a shard: runtime settings plus how attention is expressed (see AttentionKind). */
export interface ShardOptions extends RuntimeOptions {
  /** Default: "gqa" when the fused kernel supports the head size (head_dim % 16 == 0), else "ops". */
  attention?: AttentionKind;
  /** Also compute every projection's input (see `computeWithProbes`); for calibrating compression. */
  probes?: boolean;
}

/**
 * The fused kernel where it applies: measured on a SmolLM2-135M shape (1 thread), it matches the
 * operator graph at short contexts and is ~25% faster per decode step at 1,024 tokens of context.
 * Every party derives the same choice from the config, so results stay reproducible.
 */
export function defaultAttention(c: ModelConfig): AttentionKind {
  return c.headDim % 16 === 0 ? "gqa" : "ops";
}

/** Layers [first, last) of a model, ready to run steps of many independent sequences. */
export class Shard {
  readonly config: ModelConfig;
  readonly first: number;
  readonly last: number;
  readonly attention: AttentionKind;
  private readonly session: ort.InferenceSession;
  private readonly probes: boolean | undefined;
  /** Bytes of weights one step reads (as the graph holds them). */
  readonly weightBytes: number;

  private constructor(
    config: ModelConfig,
    first: number,
    last: number,
    attention: AttentionKind,
    session: ort.InferenceSession,
    probes: boolean | undefined,
    weightBytes: number,
    private readonly scratch: ScratchDir,
  ) {
    this.weightBytes = weightBytes;
    this.config = config;
    this.first = first;
    this.last = last;
    this.attention = attention;
    this.session = session;
    this.probes = probes;
  }

  /** Reads only layers [first, last) from `model` and builds their graph. */
  static async load(model: ModelDirectory, first: number, last: number, options: ShardOptions = {}): Promise<Shard> {
    const c = model.config;
    if (!Number.isInteger(first) || !Number.isInteger(last) || first < 0 || last <= first || last > c.numLayers) {
      throw new EngineError("BAD_LAYER_RANGE", `layer range ${first}:${last} is not within 0:${c.numLayers} or is empty`, {
        first,
        last,
        numLayers: c.numLayers,
      });
    }
    const attention = options.attention ?? defaultAttention(c);
    if (attention === "gqa" && c.headDim % 16 !== 0) {
      throw new EngineError("UNSUPPORTED_ATTENTION", `fused GroupQueryAttention needs head_dim a multiple of 16, this model has ${c.headDim}`);
    }
    let weightBytes = 0;
    // buildShardGraph writes (or copies) each layer's projections before it loads the next one, so
    // one layer's buffers serve them all
    const buffers = new LayerBuffers();
    const loadLayer = (layer: number): LayerWeights => {
      const w = loadLayerWeights(model, layer, buffers);
      weightBytes += layerWeightBytes(w);
      return w;
    };
    const { session, scratch } = await createFileSession(
      (externalData) => {
        try {
          return buildShardGraph(c, first, last, loadLayer, {
            attention,
            probes: options.probes,
            quantAccuracyLevel: accuracyLevelOf(model.compression),
            externalData,
          });
        } finally {
          buffers.release();
        }
      },
      options,
    );
    return new Shard(c, first, last, attention, session, options.probes, weightBytes, scratch);
  }

  get numLayers(): number {
    return this.last - this.first;
  }

  /** Longest sequence this shard accepts. */
  get maxLength(): number {
    return this.attention === "gqa" ? gqaMaxPositions(this.config) : this.config.maxPositionEmbeddings;
  }

  newCache(): KvCache {
    const c = this.config;
    const dims = this.attention === "gqa" ? [1, c.numKvHeads, 0, c.headDim] : [c.numKvHeads, 0, c.headDim];
    const empty = (): ort.Tensor => new ort.Tensor("float32", new Float32Array(0), dims);
    return {
      length: 0,
      keys: Array.from({ length: this.numLayers }, empty),
      values: Array.from({ length: this.numLayers }, empty),
    };
  }

  /**
   * A cache for one sequence that runs in place: a row of a one-row KvSlotPool of its own where the
   * fused-attention graph allows (else `newCache()`). A cache with its own tensors gets its whole
   * present back from every step (copied out of ONNX Runtime: work that grows with the context); in
   * a slot a decode step fetches only the new keys and values. Same results bit for bit
   * (test/engine/batchSlots.test.ts). Nothing to release: the pool goes with the cache.
   */
  newInPlaceCache(): KvCache {
    const cache = this.newCache();
    if (this.batches) this.slotPool({ maxSlots: 1, maxSlotTokens: this.maxLength }).admit(cache);
    return cache;
  }

  /**
   * A pool of KV slots for this shard's sequences (needs the fused-attention graph): a cache admitted
   * to it (`KvSlotPool.admit`) runs in place there, in `compute` and `computeBatch` alike.
   */
  slotPool(options: KvSlotPoolOptions = {}): KvSlotPool {
    if (!this.batches) throw new EngineError("UNSUPPORTED_ATTENTION", `KV slots need the fused-attention graph; this shard uses "${this.attention}"`);
    return new KvSlotPool({ numLayers: this.numLayers, kvHeads: this.config.numKvHeads, headDim: this.config.headDim }, this.maxLength, options);
  }

  /**
   * Runs T new tokens at positions cache.length … cache.length+T-1 through the shard: `hidden` is
   * (T, hiddenSize); returns the output hidden states and appends to `cache`.
   */
  async compute(hidden: Float32Array, cache: KvCache): Promise<Float32Array> {
    if (cache.slot !== undefined) return (await this.runSlots([hidden], [cache], this.rowsOf(hidden)))[0]!;
    const out = await this.run(hidden, cache);
    return out[ShardIO.hiddenOut]!.data as Float32Array;
  }

  /**
   * `compute`, also returning each layer's projection inputs (T, width) keyed by
   * ShardIO.probe(layer, point). Needs a shard loaded with `probes: true`.
   */
  async computeWithProbes(hidden: Float32Array, cache: KvCache): Promise<{ hidden: Float32Array; probes: Map<string, Float32Array> }> {
    if (this.probes !== true) throw new EngineError("NO_PROBES", "this shard was loaded without probes: true");
    if (cache.slot !== undefined) throw new EngineError("NO_PROBES", "probes are computed only for a cache with its own tensors, not one in a KV slot");
    const out = await this.run(hidden, cache);
    const probes = new Map<string, Float32Array>();
    for (let layer = this.first; layer < this.last; layer++) {
      for (const point of PROBE_POINTS) probes.set(ShardIO.probe(layer, point), out[ShardIO.probe(layer, point)]!.data as Float32Array);
    }
    return { hidden: out[ShardIO.hiddenOut]!.data as Float32Array, probes };
  }

  /** Bytes of keys and values one token of one sequence holds in this shard's cache. */
  get kvBytesPerToken(): number {
    return 2 * this.numLayers * this.config.numKvHeads * this.config.headDim * 4;
  }

  /** Whether `computeBatch` runs its sequences in one engine run (the fused-attention graph). */
  get batches(): boolean {
    return this.attention === "gqa";
  }

  /**
   * The next token of several independent sequences at once: `hiddens[i]` is (1, hiddenSize) for
   * the sequence of `caches[i]`. With the fused-attention graph this is one engine run: the
   * weights are read once for all sequences (decode is memory-bound, so B tokens cost about one).
   * When the caches live in one KvSlotPool the run reads them in place and the pool appends only the
   * new keys and values; caches with their own tensors are copied into a batch padded to the longest
   * and back. Either way the
   * results equal separate `compute` calls bit for bit on the shapes tested (test/engine/batch*.test.ts:
   * the fused kernel attends per sequence, and the row-wise products round alike for 1 or B rows).
   * Without the fused graph the sequences run one after another.
   */
  async computeBatch(hiddens: readonly Float32Array[], caches: readonly KvCache[]): Promise<Float32Array[]> {
    const c = this.config;
    const B = hiddens.length;
    if (caches.length !== B) throw new EngineError("BAD_BATCH", `${B} hidden states for ${caches.length} caches`);
    if (new Set(caches).size !== B) throw new EngineError("BAD_BATCH", "a batch names the same sequence twice");
    for (const h of hiddens) {
      if (h.length !== c.hiddenSize) throw new EngineError("BAD_HIDDEN", `a batched step takes one token of ${c.hiddenSize} floats, got ${h.length}`);
    }
    for (const cache of caches) {
      if (cache.length + 1 > this.maxLength) {
        throw new EngineError("SEQUENCE_TOO_LONG", `sequence would reach ${cache.length + 1} tokens, over this shard's limit of ${this.maxLength}`);
      }
    }
    if (caches.some((k) => k.slot !== undefined)) return this.runSlots(hiddens, caches, 1);
    if (B === 1 || !this.batches) {
      const out: Float32Array[] = [];
      for (let i = 0; i < B; i++) out.push(await this.compute(hiddens[i]!, caches[i]!));
      return out;
    }
    const { numKvHeads: kvH, headDim: D, hiddenSize: H } = c;
    const P = Math.max(...caches.map((k) => k.length));
    const rows = new Float32Array(B * H);
    hiddens.forEach((h, i) => rows.set(h, i * H));
    const feeds: Record<string, ort.Tensor> = {
      [ShardIO.hidden]: new ort.Tensor("float32", rows, [B, H]),
      [ShardIO.seqlensK]: new ort.Tensor("int32", Int32Array.from(caches, (k) => k.length), [B]),
      [ShardIO.totalLength]: new ort.Tensor("int32", Int32Array.of(P + 1), []),
      [ShardIO.batchShape]: new ort.Tensor("int64", BigInt64Array.of(BigInt(B), 1n, -1n), [3]),
    };
    // each sequence's (1, kvH, len, D) cache into row b of a (B, kvH, P, D) batch
    const pad = (pick: (k: KvCache) => ort.Tensor): ort.Tensor => {
      const out = new Float32Array(B * kvH * P * D);
      caches.forEach((k, b) => {
        const src = pick(k).data as Float32Array;
        for (let h = 0; h < kvH; h++) out.set(src.subarray(h * k.length * D, (h + 1) * k.length * D), (b * kvH + h) * P * D);
      });
      return new ort.Tensor("float32", out, [B, kvH, P, D]);
    };
    for (let i = 0; i < this.numLayers; i++) {
      feeds[ShardIO.pastKey(this.first + i)] = pad((k) => k.keys[i]!);
      feeds[ShardIO.pastValue(this.first + i)] = pad((k) => k.values[i]!);
    }
    const out = await this.session.run(feeds);
    // and back: row b of the (B, kvH, S, D) present holds that sequence's len + 1 positions first
    const unpad = (present: ort.Tensor, b: number, len: number): ort.Tensor => {
      const S = present.dims[2]!;
      const src = present.data as Float32Array;
      const dst = new Float32Array(kvH * len * D);
      for (let h = 0; h < kvH; h++) dst.set(src.subarray((b * kvH + h) * S * D, (b * kvH + h) * S * D + len * D), h * len * D);
      return new ort.Tensor("float32", dst, [1, kvH, len, D]);
    };
    caches.forEach((k, b) => {
      const len = k.length + 1;
      for (let i = 0; i < this.numLayers; i++) {
        k.keys[i] = unpad(out[ShardIO.presentKey(this.first + i)]!, b, len);
        k.values[i] = unpad(out[ShardIO.presentValue(this.first + i)]!, b, len);
      }
      k.length = len;
    });
    const hidden = out[ShardIO.hiddenOut]!.data as Float32Array;
    return Array.from({ length: B }, (_, b) => hidden.slice(b * H, (b + 1) * H));
  }

  private rowsOf(hidden: Float32Array): number {
    const T = hidden.length / this.config.hiddenSize;
    if (!Number.isInteger(T) || T < 1) {
      throw new EngineError("BAD_HIDDEN", `hidden states of ${hidden.length} floats are not a whole number of ${this.config.hiddenSize}-wide rows`);
    }
    return T;
  }

  /**
   * T new tokens for each of `caches` (all in one pool; T > 1 only for one sequence), as one run over
   * the pool's rows [lo, hi) that hold them, each row's past read in place. One token each (decode):
   * the run fetches only the new keys and values (ShardIO.newKey), which the pool appends; the kernel's
   * present stays inside ONNX Runtime (it copies each row's valid past there, which costs less than
   * handing a present of every row's full capacity to JavaScript). Rows in the range that are not in
   * the batch get a zero input and their new position is dropped. T tokens of one sequence (a prefill
   * chunk): past and present are the same memory, so the kernel appends in place.
   */
  private async runSlots(hiddens: readonly Float32Array[], caches: readonly KvCache[], T: number): Promise<Float32Array[]> {
    const H = this.config.hiddenSize;
    const pool = caches[0]!.slot?.pool;
    if (pool === undefined || caches.some((k) => k.slot?.pool !== pool)) {
      throw new EngineError("BAD_BATCH", "a batch mixes caches of different KV slot pools, or of none");
    }
    // a pool is only memory: any pool with (at least) this shard's layers and head shape will do, as
    // a cache with its own tensors does (this shard uses its first numLayers layers)
    const { numLayers, kvHeads, headDim } = pool.shape;
    if (numLayers < this.numLayers || kvHeads !== this.config.numKvHeads || headDim !== this.config.headDim) {
      throw new EngineError("BAD_SLOT", `a KV slot pool of ${numLayers} layers × ${kvHeads} heads × ${headDim} does not fit this shard's ${this.numLayers} × ${this.config.numKvHeads} × ${this.config.headDim}`);
    }
    if (T > 1 && caches.length > 1) throw new EngineError("BAD_BATCH", "a batched step takes one token per sequence");
    for (const cache of caches) {
      if (cache.length + T > this.maxLength) {
        throw new EngineError("SEQUENCE_TOO_LONG", `sequence would reach ${cache.length + T} tokens, over this shard's limit of ${this.maxLength}`);
      }
      if (cache.length + T > pool.maxSlotTokens) {
        throw new EngineError("SLOT_TOO_LONG", `sequence would reach ${cache.length + T} tokens, over its KV slot's limit of ${pool.maxSlotTokens}`);
      }
    }
    const rows = caches.map((k) => k.slot!.row);
    const lo = Math.min(...rows);
    const n = Math.max(...rows) - lo + 1;
    pool.prepareRun(lo, n, T);
    const input = new Float32Array(n * T * H);
    hiddens.forEach((h, i) => input.set(h, (rows[i]! - lo) * T * H));
    const lengths = Array.from({ length: n }, (_, b) => pool.lengthOf(lo + b));
    const feeds: Record<string, ort.Tensor> = {
      [ShardIO.hidden]: new ort.Tensor("float32", input, [n * T, H]),
      [ShardIO.seqlensK]: new ort.Tensor("int32", Int32Array.from(lengths, (len) => len + T - 1), [n]),
      [ShardIO.totalLength]: new ort.Tensor("int32", Int32Array.of(Math.max(...lengths) + T), []),
      [ShardIO.batchShape]: new ort.Tensor("int64", BigInt64Array.of(BigInt(n), BigInt(T), -1n), [3]),
    };
    const view = pool.view(lo, n);
    for (let i = 0; i < this.numLayers; i++) {
      feeds[ShardIO.pastKey(this.first + i)] = view.keys[i]!;
      feeds[ShardIO.pastValue(this.first + i)] = view.values[i]!;
    }
    const layers = Array.from({ length: this.numLayers }, (_, i) => this.first + i);
    const out = await pool.pinned(async () => {
      if (T === 1) {
        const fetched = await this.session.run(feeds, [ShardIO.hiddenOut, ...layers.flatMap((l) => [ShardIO.newKey(l), ShardIO.newValue(l)])]);
        const rowsOf = (name: (l: number) => string): Float32Array[] => layers.map((l) => fetched[name(l)]!.data as Float32Array);
        pool.append(lo, caches, rowsOf(ShardIO.newKey), rowsOf(ShardIO.newValue));
        return fetched;
      }
      // the same tensors as past (input) and present (pre-allocated output): the kernel sees one buffer
      const fetches: Record<string, ort.Tensor | null> = { [ShardIO.hiddenOut]: null };
      for (const l of layers) {
        fetches[ShardIO.presentKey(l)] = feeds[ShardIO.pastKey(l)]!;
        fetches[ShardIO.presentValue(l)] = feeds[ShardIO.pastValue(l)]!;
      }
      const fetched = await this.session.run(feeds, fetches);
      for (const cache of caches) cache.length += T;
      return fetched;
    });
    const hidden = out[ShardIO.hiddenOut]!.data as Float32Array;
    return rows.map((r) => hidden.slice((r - lo) * T * H, (r - lo + 1) * T * H));
  }

  private async run(hidden: Float32Array, cache: KvCache): Promise<ort.InferenceSession.ReturnType> {
    const c = this.config;
    const T = this.rowsOf(hidden);
    const past = cache.length;
    const maxLength = this.maxLength;
    if (past + T > maxLength) {
      throw new EngineError("SEQUENCE_TOO_LONG", `sequence would reach ${past + T} tokens, over this shard's limit of ${maxLength}`);
    }
    const feeds: Record<string, ort.Tensor> = { [ShardIO.hidden]: new ort.Tensor("float32", hidden, [T, c.hiddenSize]) };
    if (this.attention === "gqa") {
      feeds[ShardIO.seqlensK] = new ort.Tensor("int32", Int32Array.of(past + T - 1), [1]);
      feeds[ShardIO.totalLength] = new ort.Tensor("int32", Int32Array.of(past + T), []);
      feeds[ShardIO.batchShape] = new ort.Tensor("int64", BigInt64Array.of(1n, BigInt(T), -1n), [3]);
    } else {
      const { cos, sin } = ropeTables(c, Array.from({ length: T }, (_, i) => past + i));
      feeds[ShardIO.cos] = new ort.Tensor("float32", cos, [T, c.headDim]);
      feeds[ShardIO.sin] = new ort.Tensor("float32", sin, [T, c.headDim]);
      feeds[ShardIO.mask] = new ort.Tensor("float32", causalMask(past, T), [T, past + T]);
    }
    for (let i = 0; i < this.numLayers; i++) {
      feeds[ShardIO.pastKey(this.first + i)] = cache.keys[i]!;
      feeds[ShardIO.pastValue(this.first + i)] = cache.values[i]!;
    }
    const out = await this.session.run(feeds);
    for (let i = 0; i < this.numLayers; i++) {
      cache.keys[i] = out[ShardIO.presentKey(this.first + i)]!;
      cache.values[i] = out[ShardIO.presentValue(this.first + i)]!;
    }
    cache.length = past + T;
    return out;
  }

  async release(): Promise<void> {
    try {
      await this.session.release();
    } finally {
      this.scratch.remove();
    }
  }
}
