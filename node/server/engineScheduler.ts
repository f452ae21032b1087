import { EngineError } from "../../engine/errors.js";
import { DEFAULT_KV_SLOT_POOL, type KvSlotPool } from "../../engine/runtime/kvSlots.js";
import type { KvCache, Shard } from "../../engine/runtime/shard.js";
import { concatFloat32 } from "../../protocol/floats.js";
import { gatherArrivals } from "../../protocol/gather.js";

interface Job {
  /** Whose turn this counts against (fairness key: the client's remote address). */
  client: string;
  hidden: Float32Array;
  cache: KvCache;
  /** Rows already run (a prefill runs in chunks). */
  done: number;
  outputs: Float32Array[];
  resolve: (output: Float32Array) => void;
  reject: (err: unknown) => void;
}

/** How runs are formed: batching of decode steps, and the size of one prefill run. */
export interface BatchPolicy {
  /** Sequences in one run at most. */
  maxBatch: number;
  /**
   * Caches outside the slot pool are copied into a padded batch and back once per run; such a batch
   * grows only while those copies stay under this fraction of the shard's weight bytes, so batching
   * saves more reads than it adds. (Caches in the pool are not copied: no limit applies to them.)
   */
  maxCopyShare: number;
  /**
   * A prefill longer than this runs as chunks of at most this many rows (never a 1-row chunk), one
   * engine run each, so no client holds the engine for longer than one chunk while others wait.
   */
  maxRunTokens: number;
  /**
   * Sessions whose caches live in the shard's KV slot pool (`Shard.slotPool`), where batched steps
   * run in place; 0 turns the pool off. A session that finds every slot taken runs with its own
   * cache (batched with padding copies, or alone) and moves into a slot when one frees.
   */
  slots: number;
  /** Tokens one slot holds at most (and at most the shard's limit); a longer session leaves its slot. */
  maxSlotTokens: number;
  /** Slots grow and shrink by this many tokens at a time (each time is one copy of the pool). */
  slotChunkTokens: number;
  /**
   * Before a decode batch starts while fewer steps wait than sessions hold slots, the scheduler waits
   * up to this many ms for another step to arrive, again after each arrival (0: never waits). The
   * steps of one batch leave a server one after another and reach the next hop (or come back from the
   * client) a little apart; a run started on the first would split the group for good.
   */
  gatherMs: number;
  /**
   * Only sessions that ran a step within this many ms are waited for when gathering: a session idle
   * longer (a user reading, a client gone quiet) holds its slot but delays nobody's run.
   */
  activeMs: number;
}

export const DEFAULT_BATCH_POLICY: BatchPolicy = {
  maxBatch: 16,
  maxCopyShare: 0.5,
  maxRunTokens: 64,
  slots: DEFAULT_KV_SLOT_POOL.maxSlots,
  maxSlotTokens: DEFAULT_KV_SLOT_POOL.maxSlotTokens,
  slotChunkTokens: DEFAULT_KV_SLOT_POOL.chunkTokens,
  gatherMs: 2,
  activeMs: 1000,
};

/**
 * Runs a shard's steps one engine run at a time, fairly between clients: clients take turns (round
 * robin over the clients with work waiting), each turn one run, and a prefill runs one chunk per turn.
 * So a client that queues many long prefills delays another client's step by at most one chunk per
 * server. Decode steps (one token) of different sessions that wait together run as one batch
 * (`Shard.computeBatch`): decode reads every weight once per run, so a batch of B costs little more
 * than one step; a batch takes one step per client per pass, so it is shared fairly too. A step that
 * arrives while a run is under way joins the next run, whatever the sessions before it still have to
 * do; and before a decode run starts, the scheduler waits briefly for steps still on their way
 * (`gatherMs`), so a group of sessions that ran together at the previous hop stays together.
 *
 * Sessions' caches live in one KV slot pool (the policy's `slots`): a session takes a free slot at
 * its first step (or, if it ran outside the pool before, with one copy of its cache when a slot
 * frees), and a batch of slotted sessions reads and appends their caches in place. `release` frees
 * a finished session's slot for the next session. Slotted and separate steps give the same bits.
 *
 * Chunking is part of how a step is computed: a prefill of more than `maxRunTokens` rows runs as
 * chunks whose sizes depend only on its row count, so the same step always computes the same bits.
 * They equal one unchunked run within float rounding (attention sums over cached chunks in another
 * order: ≤ 6e-6 measured on random models; bit-identical on the shipped model at 64), which a
 * verifier's one-pass replay tolerates like the decode steps' single-row kernels. The last chunk is
 * never one row (it takes the extra row instead).
 */
export class EngineScheduler {
  /** Waiting jobs per client, clients in turn order (the next to serve first). */
  private readonly queues = new Map<string, Job[]>();
  private running: Promise<void> | undefined;
  /** Sizes of the runs so far (how much batching happened), most recent last, bounded. */
  readonly recentBatchSizes: number[] = [];
  /** Where sessions' caches live while they fit (undefined: pool off, or a shard that cannot batch). */
  readonly pool: KvSlotPool | undefined;
  /** When each session's last run ended (clock ms), to tell active sessions from idle ones. */
  private readonly lastRunAt = new Map<KvCache, number>();

  /** `clock` (ms) is for tests; it defaults to the monotonic clock. */
  constructor(
    private readonly shard: Shard,
    private readonly policy: BatchPolicy = DEFAULT_BATCH_POLICY,
    private readonly clock: () => number = () => performance.now(),
  ) {
    if (!Number.isInteger(policy.slots) || policy.slots < 0) throw new EngineError("BAD_POLICY", `batch policy slots must be an integer ≥ 0, got ${policy.slots}`);
    if (!Number.isFinite(policy.gatherMs) || policy.gatherMs < 0) throw new EngineError("BAD_POLICY", `batch policy gatherMs must be a number ≥ 0, got ${policy.gatherMs}`);
    if (!Number.isFinite(policy.activeMs) || policy.activeMs < 0) throw new EngineError("BAD_POLICY", `batch policy activeMs must be a number ≥ 0, got ${policy.activeMs}`);
    this.pool =
      shard.batches === true && policy.slots > 0
        ? shard.slotPool({ maxSlots: policy.slots, maxSlotTokens: policy.maxSlotTokens, chunkTokens: policy.slotChunkTokens })
        : undefined;
  }

  /**
   * The session of `cache` is over: its queued steps are rejected and its slot (if any) is freed for
   * the next session. Its cache must not be used again.
   */
  release(cache: KvCache): void {
    for (const queue of [...this.queues.values()]) {
      for (const job of queue.filter((j) => j.cache === cache)) {
        this.removeJob(job);
        job.reject(new EngineError("SEQUENCE_RELEASED", "the session of this step was closed before the step ran"));
      }
    }
    if (cache.slot !== undefined) cache.slot.pool.free(cache);
    this.lastRunAt.delete(cache);
  }

  /** Runs `hidden` (T, hidden) through the shard for the sequence of `cache`, on behalf of `client`. */
  compute(hidden: Float32Array, cache: KvCache, client = ""): Promise<Float32Array> {
    return new Promise((resolve, reject) => {
      const queue = this.queues.get(client);
      const job: Job = { client, hidden, cache, done: 0, outputs: [], resolve, reject };
      if (queue === undefined) this.queues.set(client, [job]);
      else queue.push(job);
      this.running ??= this.drain();
    });
  }

  /** Steps waiting or running. */
  get queued(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.length;
    return n;
  }

  /** Resolves once no step is queued or running. */
  async idle(): Promise<void> {
    while (this.running !== undefined) await this.running;
  }

  private async drain(): Promise<void> {
    try {
      while (this.queues.size > 0) {
        await this.gather();
        if (this.queues.size === 0) break; // released while gathering
        const first = this.queues.values().next().value![0]!;
        this.place(first);
        if (this.rowsOf(first) > 1) await this.runChunk(first);
        else await this.runDecodes(this.decodeBatch(first));
        this.endTurn(first.client);
      }
    } finally {
      this.running = undefined;
    }
  }

  /**
   * Waits (policy.gatherMs at a time) while decode steps keep arriving and fewer wait than active
   * sessions hold slots: the rest of a batch that left the previous hop together is probably on its
   * way. A session idle for longer than policy.activeMs is not waited for.
   */
  private async gather(): Promise<void> {
    if (this.pool === undefined) return;
    const expected = () => Math.min(this.activeSlottedSessions(), this.policy.maxBatch);
    await gatherArrivals(() => this.decodesWaiting(), expected, this.policy.gatherMs);
  }


  /** Sessions in the pool whose last run ended within policy.activeMs; forgets the others. */
  private activeSlottedSessions(): number {
    const since = this.clock() - this.policy.activeMs;
    let n = 0;
    for (const [cache, at] of this.lastRunAt) {
      if (at < since || cache.slot === undefined) this.lastRunAt.delete(cache);
      else n++;
    }
    return n;
  }

  private decodesWaiting(): number {
    let n = 0;
    for (const queue of this.queues.values()) for (const job of queue) if (this.rowsOf(job) === 1) n++;
    return n;
  }

  /**
   * Puts the job's cache where its next run will be: into a free slot when it fits one (a copy only
   * if it ran outside the pool before), out of its slot when the session grows past the slot limit.
   * Returns whether the cache is in the pool.
   */
  private place(job: Job): boolean {
    const pool = this.pool;
    if (pool === undefined) return false;
    const after = job.cache.length + this.rowsOf(job) - job.done;
    if (job.cache.slot !== undefined && !pool.fits(after)) pool.moveOut(job.cache);
    else if (job.cache.slot === undefined && pool.fits(after)) pool.admit(job.cache);
    return job.cache.slot !== undefined;
  }

  private rowsOf(job: Job): number {
    return job.hidden.length / this.shard.config.hiddenSize;
  }

  /** The client whose job just ran goes behind every client waiting, including those that arrived during the run. */
  private endTurn(client: string): void {
    const queue = this.queues.get(client);
    if (queue === undefined) return;
    this.queues.delete(client);
    this.queues.set(client, queue);
  }

  private removeJob(job: Job): void {
    const queue = this.queues.get(job.client)!;
    queue.splice(queue.indexOf(job), 1);
    if (queue.length === 0) this.queues.delete(job.client);
  }

  /** The next chunk of a prefill; the job stays queued (first of its client) until its last chunk. */
  private async runChunk(job: Job): Promise<void> {
    const H = this.shard.config.hiddenSize;
    const rows = this.rowsOf(job);
    const left = rows - job.done;
    // never leave a 1-row tail: it would run on the single-row kernel path
    const take = left <= this.policy.maxRunTokens + 1 ? left : left - this.policy.maxRunTokens === 1 ? left - 2 : this.policy.maxRunTokens;
    this.recordRun(1);
    try {
      const out = await this.shard.compute(job.hidden.subarray(job.done * H, (job.done + take) * H), job.cache);
      job.outputs.push(out);
      job.done += take;
      if (job.cache.slot !== undefined) this.lastRunAt.set(job.cache, this.clock());
    } catch (err) {
      // A failed chunk leaves the cache as it was before that chunk; earlier chunks stay in it,
      // so the session cannot continue from a consistent state: the caller closes it.
      this.removeJob(job);
      job.reject(err);
      return;
    }
    if (job.done < rows) return;
    this.removeJob(job);
    job.resolve(job.outputs.length === 1 ? job.outputs[0]! : concatFloat32(job.outputs));
  }

  /** The first job plus other decode steps that fit the policy, one per client per pass. */
  private decodeBatch(first: Job): Job[] {
    this.removeJob(first);
    const batch = [first];
    if (!this.shard.batches || first.hidden.length !== this.shard.config.hiddenSize) return batch;
    const slotted = first.cache.slot !== undefined;
    const budget = this.policy.maxCopyShare * this.shard.weightBytes;
    let longest = first.cache.length + 1;
    for (let added = true; added && batch.length < this.policy.maxBatch; ) {
      added = false;
      for (const queue of [...this.queues.values()]) {
        if (batch.length >= this.policy.maxBatch) break;
        const job = queue.find((j) => this.rowsOf(j) === 1 && !batch.some((b) => b.cache === j.cache));
        if (job === undefined) continue;
        // one kind per run: slotted steps in place, the others padded (within the copy budget)
        if (this.place(job) !== slotted) continue;
        const padded = Math.max(longest, job.cache.length + 1);
        const copyBytes = 2 * (batch.length + 1) * padded * this.shard.kvBytesPerToken; // in and out
        if (!slotted && copyBytes > budget) continue;
        batch.push(job);
        longest = padded;
        this.removeJob(job);
        added = true;
      }
    }
    return batch;
  }

  private async runDecodes(batch: Job[]): Promise<void> {
    this.recordRun(batch.length);
    try {
      const outputs =
        batch.length === 1
          ? [await this.shard.compute(batch[0]!.hidden, batch[0]!.cache)]
          : await this.shard.computeBatch(
              batch.map((j) => j.hidden),
              batch.map((j) => j.cache),
            );
      const now = this.clock();
      batch.forEach((j, i) => {
        if (j.cache.slot !== undefined) this.lastRunAt.set(j.cache, now);
        j.resolve(outputs[i]!);
      });
    } catch (err) {
      for (const j of batch) j.reject(err); // no cache changed: a failed run updates none
    }
  }

  private recordRun(size: number): void {
    this.recentBatchSizes.push(size);
    if (this.recentBatchSizes.length > 1024) this.recentBatchSizes.splice(0, 512);
  }
}
