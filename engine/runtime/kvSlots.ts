import { InvalidArgumentError } from "../../protocol/errors.js";
import { EngineError } from "../errors.js";
import { ort } from "./session.js";

/** The keys and values one sequence has accumulated in a shard. */
export interface KvCache {
  length: number;
  /** Per layer ([1,] kvHeads, length, headDim), while the sequence holds its own tensors (no `slot`). */
  keys: ort.Tensor[];
  values: ort.Tensor[];
  /** Set while the sequence lives in a row of a KvSlotPool: its keys and values are there, not in `keys`/`values`. */
  slot?: KvSlot;
}

/** Where a sequence's cache lives in a pool. */
export interface KvSlot {
  readonly pool: KvSlotPool;
  readonly row: number;
}

/** Shape of one shard's cache: what a pool must hold per position. */
export interface KvShape {
  numLayers: number;
  kvHeads: number;
  headDim: number;
}

/** Bounds of a pool. The buffers grow only as far as the sequences in it need, never past these. */
export interface KvSlotPoolOptions {
  /** Sequences held at once (rows), default 16. A sequence that finds no free row keeps its own tensors. */
  maxSlots?: number;
  /** Positions one row holds at most, default 2,048 (and at most the shard's limit). A longer sequence leaves the pool. */
  maxSlotTokens?: number;
  /** Rows grow (and shrink) in steps of this many positions, default 32: a step of growth copies every row once. */
  chunkTokens?: number;
}

export const DEFAULT_KV_SLOT_POOL: Required<KvSlotPoolOptions> = { maxSlots: 16, maxSlotTokens: 2048, chunkTokens: 32 };

/**
 * The caches of many sequences in one buffer per layer and kind: keys[layer] and values[layer] are
 * (rows, kvHeads, capacity, headDim), a row per sequence. A batched decode step hands ONNX Runtime a
 * view of consecutive rows as its past (no copy) and fetches only each sequence's new key and value,
 * which `append` writes at the sequence's length (see Shard.runSlots); the kernel's own present is
 * internal to the run, so nothing the size of the caches crosses into JavaScript. Rows are taken
 * lowest first and reused when a sequence leaves; a freed row is zeroed, so positions past a row's
 * length always read 0.
 *
 * Capacity (positions per row) is the same for every row: it grows by `chunkTokens` when the longest
 * sequence needs it and shrinks when the longest left, one copy of the valid positions each time. It
 * always keeps room for every row's next position, so a step can append without moving the buffers.
 *
 * Memory is bounded by maxSlots × (maxSlotTokens + chunkTokens) positions × bytes per position.
 */
export class KvSlotPool {
  readonly maxSlots: number;
  readonly maxSlotTokens: number;
  readonly chunkTokens: number;
  /** Per layer (rows, kvHeads, capacity, headDim). */
  private keys: Float32Array[] = [];
  private values: Float32Array[] = [];
  private rowCount = 0;
  private cap = 0;
  /** The sequence in each row (undefined: free), rows.length === rowCount. */
  private owners: (KvCache | undefined)[] = [];
  /** While a run reads and writes the buffers they must not move; frees wait for the run to end. */
  private locked = false;
  private deferredFrees: KvCache[] = [];

  constructor(
    readonly shape: KvShape,
    /** The shard's longest sequence. */
    shardMaxLength: number,
    options: KvSlotPoolOptions = {},
  ) {
    const o = { ...DEFAULT_KV_SLOT_POOL, ...options };
    for (const [name, v] of Object.entries(o)) {
      if (!Number.isInteger(v) || v < 1) throw new InvalidArgumentError(`KV slot pool option ${name} must be a positive integer, got ${v}`);
    }
    this.maxSlots = o.maxSlots;
    this.maxSlotTokens = Math.min(o.maxSlotTokens, shardMaxLength);
    this.chunkTokens = o.chunkTokens;
  }

  /** Positions each row holds now. */
  get capacity(): number {
    return this.cap;
  }

  /** Rows allocated now (free ones included). */
  get rows(): number {
    return this.rowCount;
  }

  /** Sequences in the pool. */
  get used(): number {
    return this.owners.filter((o) => o !== undefined).length;
  }

  /** Bytes the buffers take now. */
  get bytes(): number {
    return 2 * this.shape.numLayers * this.rowCount * this.shape.kvHeads * this.cap * this.shape.headDim * 4;
  }

  /** Length of the sequence in `row` (0 when free or past the rows). */
  lengthOf(row: number): number {
    return this.owners[row]?.length ?? 0;
  }

  /** Whether `cache` could live here once it has `tokens` positions. */
  fits(tokens: number): boolean {
    return tokens <= this.maxSlotTokens;
  }

  /**
   * Moves `cache` into the lowest free row (copying what it holds, once); false when every row is
   * taken. A cache already in this pool stays where it is.
   */
  admit(cache: KvCache): boolean {
    if (cache.slot !== undefined) {
      if (cache.slot.pool !== this) throw new EngineError("BAD_SLOT", "this sequence lives in another pool");
      return true;
    }
    if (!this.fits(cache.length + 1)) return false;
    let row = this.owners.indexOf(undefined);
    if (row === -1) {
      if (this.rowCount >= this.maxSlots) return false;
      row = this.rowCount;
    }
    this.reserve(Math.max(row + 1, this.rowCount), cache.length + 1);
    const { headDim: D, kvHeads: kvH } = this.shape;
    for (let l = 0; l < this.shape.numLayers; l++) {
      for (const [own, buffer] of [
        [cache.keys[l], this.keys[l]],
        [cache.values[l], this.values[l]],
      ] as const) {
        const src = own!.data as Float32Array;
        for (let h = 0; h < kvH; h++) buffer!.set(src.subarray(h * cache.length * D, (h + 1) * cache.length * D), this.offset(row, h));
      }
    }
    this.owners[row] = cache;
    cache.slot = { pool: this, row };
    cache.keys = [];
    cache.values = [];
    return true;
  }

  /** Gives `cache` its own tensors again (a copy of its positions) and frees its row. */
  moveOut(cache: KvCache): void {
    const row = this.rowOf(cache);
    if (this.locked) throw new EngineError("BAD_SLOT", "a sequence cannot leave its KV slot during a run");
    const { headDim: D, kvHeads: kvH } = this.shape;
    const own = (buffer: Float32Array): ort.Tensor => {
      const dst = new Float32Array(kvH * cache.length * D);
      for (let h = 0; h < kvH; h++) dst.set(buffer.subarray(this.offset(row, h), this.offset(row, h) + cache.length * D), h * cache.length * D);
      return new ort.Tensor("float32", dst, [1, kvH, cache.length, D]);
    };
    const keys = this.keys.map(own);
    const values = this.values.map(own);
    this.free(cache);
    cache.keys = keys;
    cache.values = values;
  }

  /**
   * The sequence is over: its row is free for the next one (during a run, once the run ends). The
   * cache is left empty.
   */
  free(cache: KvCache): void {
    const row = this.rowOf(cache);
    if (this.locked) {
      this.deferredFrees.push(cache);
      return;
    }
    // the next sequence in this row must not see this one's positions (nor would it read them: a
    // run reads a row up to its length, but zeros keep that a property of the pool, not of the kernel)
    for (const buffer of [...this.keys, ...this.values]) buffer.fill(0, this.offset(row, 0), this.offset(row + 1, 0));
    this.owners[row] = undefined;
    delete cache.slot;
    cache.keys = [];
    cache.values = [];
    this.shrink();
  }

  /**
   * Makes room for a run over rows [lo, lo + n) that adds `tokens` positions to each: capacity for
   * every row's length + tokens. May move the buffers (one copy): call before `view`.
   */
  prepareRun(lo: number, n: number, tokens: number): void {
    let longest = 0;
    for (let r = lo; r < lo + n; r++) longest = Math.max(longest, this.lengthOf(r));
    this.reserve(this.rowCount, longest + tokens);
  }

  /**
   * Writes the next position of each of `caches` from a run over rows [lo, lo + n): `keys[l]` and
   * `values[l]` are (n, kvHeads, 1, headDim) for the first keys.length layers, row b belonging to
   * pool row lo + b. Each cache's entry lands at its length, which then grows by one; rows of the run
   * not in `caches` are left as they are. Checks everything before writing anything.
   */
  append(lo: number, caches: readonly KvCache[], keys: readonly Float32Array[], values: readonly Float32Array[]): void {
    const { numLayers, kvHeads: kvH, headDim: D } = this.shape;
    if (keys.length !== values.length || keys.length < 1 || keys.length > numLayers) {
      throw new EngineError("BAD_KV", `append takes keys and values for 1 to ${numLayers} layers, got ${keys.length} and ${values.length}`);
    }
    const n = keys[0]!.length / (kvH * D);
    if (!Number.isInteger(lo) || lo < 0 || !Number.isInteger(n) || n < 1 || lo + n > this.rowCount) {
      throw new EngineError("BAD_KV", `new keys of ${keys[0]!.length} floats from row ${lo} are not whole rows of ${kvH}×${D} within the pool's ${this.rowCount} rows`);
    }
    for (const t of [...keys, ...values]) {
      if (t.length !== n * kvH * D) throw new EngineError("BAD_KV", `new keys and values of one run must each be ${n * kvH * D} floats, got ${t.length}`);
    }
    if (new Set(caches).size !== caches.length) throw new EngineError("BAD_BATCH", "append names the same sequence twice");
    for (const cache of caches) {
      const row = this.rowOf(cache);
      if (row < lo || row >= lo + n) throw new EngineError("BAD_SLOT", `the sequence in row ${row} is outside the run's rows ${lo}..${lo + n - 1}`);
      if (cache.length + 1 > this.maxSlotTokens) {
        throw new EngineError("SLOT_TOO_LONG", `the sequence in row ${row} has ${cache.length} tokens, the slot limit of ${this.maxSlotTokens}: no room for another`);
      }
      if (cache.length + 1 > this.cap) {
        throw new EngineError("SLOT_FULL", `the sequence in row ${row} has ${cache.length} tokens and the rows hold ${this.cap}: prepareRun first`);
      }
    }
    for (const cache of caches) {
      const row = cache.slot!.row;
      for (let l = 0; l < keys.length; l++) {
        for (let h = 0; h < kvH; h++) {
          const from = ((row - lo) * kvH + h) * D;
          const to = this.offset(row, h) + cache.length * D;
          this.keys[l]!.set(keys[l]!.subarray(from, from + D), to);
          this.values[l]!.set(values[l]!.subarray(from, from + D), to);
        }
      }
      cache.length += 1;
    }
  }

  /** A copy of `row` as it is now, per layer (kvHeads, capacity, headDim): for tests and debugging. */
  snapshot(row: number): { keys: Float32Array[]; values: Float32Array[] } {
    if (!Number.isInteger(row) || row < 0 || row >= this.rowCount) throw new EngineError("BAD_SLOT", `row ${row} is not one of the pool's ${this.rowCount} rows`);
    const copy = (b: Float32Array): Float32Array => b.slice(this.offset(row, 0), this.offset(row + 1, 0));
    return { keys: this.keys.map(copy), values: this.values.map(copy) };
  }

  /** Views (no copy) of rows [lo, lo + n) per layer: (n, kvHeads, capacity, headDim). */
  view(lo: number, n: number): { keys: ort.Tensor[]; values: ort.Tensor[] } {
    const per = this.shape.kvHeads * this.cap * this.shape.headDim;
    const dims = [n, this.shape.kvHeads, this.cap, this.shape.headDim];
    const slice = (b: Float32Array): ort.Tensor => new ort.Tensor("float32", b.subarray(lo * per, (lo + n) * per), dims);
    return { keys: this.keys.map(slice), values: this.values.map(slice) };
  }

  /** Runs `fn` with the buffers pinned (frees wait until it ends). */
  async pinned<T>(fn: () => Promise<T>): Promise<T> {
    this.locked = true;
    try {
      return await fn();
    } finally {
      this.locked = false;
      const frees = this.deferredFrees;
      this.deferredFrees = [];
      for (const c of frees) if (c.slot?.pool === this) this.free(c);
    }
  }

  private rowOf(cache: KvCache): number {
    const slot = cache.slot;
    if (slot === undefined || slot.pool !== this || this.owners[slot.row] !== cache) {
      throw new EngineError("BAD_SLOT", "this sequence does not live in this pool");
    }
    return slot.row;
  }

  private offset(row: number, head: number): number {
    return (row * this.shape.kvHeads + head) * this.cap * this.shape.headDim;
  }

  /** Grows to at least `rows` rows and `positions` positions per row. */
  private reserve(rows: number, positions: number): void {
    const needRows = rows <= this.rowCount ? this.rowCount : Math.min(this.maxSlots, Math.max(rows, 2 * this.rowCount));
    // every row keeps room for a next position (see the class doc), one at maxSlotTokens too
    const limit = this.maxSlotTokens + 1;
    if (positions > limit) {
      throw new EngineError("SLOT_TOO_LONG", `a sequence in a KV slot would reach ${positions - 1} tokens, over the slot limit of ${this.maxSlotTokens}`);
    }
    const needCap = positions <= this.cap ? this.cap : Math.min(limit, Math.ceil(positions / this.chunkTokens) * this.chunkTokens);
    if (needRows !== this.rowCount || needCap !== this.cap) this.relayout(needRows, needCap);
  }

  /** After a free: drops the rows past the last used one and halves capacity or more when the longest sequence allows. */
  private shrink(): void {
    let last = this.owners.length - 1;
    while (last >= 0 && this.owners[last] === undefined) last--;
    const rows = last + 1;
    let longest = 0;
    for (const o of this.owners) longest = Math.max(longest, o?.length ?? 0);
    const cap = rows === 0 ? 0 : Math.max(this.chunkTokens, Math.ceil((longest + 1) / this.chunkTokens) * this.chunkTokens);
    const shrinkCap = cap <= this.cap / 2;
    if (rows === 0 || rows <= this.rowCount / 2 || shrinkCap) this.relayout(rows, shrinkCap || rows === 0 ? cap : this.cap);
  }

  /** New buffers of (rows, kvHeads, cap, headDim), each used row's positions copied over. */
  private relayout(rows: number, cap: number): void {
    if (this.locked) throw new EngineError("BAD_SLOT", "KV slot buffers cannot move during a run");
    const { numLayers, kvHeads: kvH, headDim: D } = this.shape;
    const size = rows * kvH * cap * D;
    const move = (old: Float32Array): Float32Array => {
      const next = new Float32Array(size);
      for (let r = 0; r < Math.min(rows, this.rowCount); r++) {
        const len = this.lengthOf(r);
        for (let h = 0; h < kvH; h++) {
          const from = (r * kvH + h) * this.cap * D;
          next.set(old.subarray(from, from + len * D), (r * kvH + h) * cap * D);
        }
      }
      return next;
    };
    const fresh = (): Float32Array => new Float32Array(size);
    this.keys = this.rowCount === 0 ? Array.from({ length: numLayers }, fresh) : this.keys.map(move);
    this.values = this.rowCount === 0 ? Array.from({ length: numLayers }, fresh) : this.values.map(move);
    this.owners = Array.from({ length: rows }, (_, r) => this.owners[r]);
    this.rowCount = rows;
    this.cap = cap;
  }
}
