import type { KvCache, Shard } from "../../engine/runtime/shard.js";

interface Job {
  hidden: Float32Array;
  cache: KvCache;
  resolve: (output: Float32Array) => void;
  reject: (err: unknown) => void;
}

/** How much batching may cost: padded cache copies against the weights a run reads. */
export interface BatchPolicy {
  /** Sequences in one run at most. */
  maxBatch: number;
  /**
   * A batch's padded caches are copied in and out once per run; it grows only while those copies
   * stay under this fraction of the shard's weight bytes, so batching saves more reads than it adds.
   */
  maxCopyShare: number;
}

export const DEFAULT_BATCH_POLICY: BatchPolicy = { maxBatch: 16, maxCopyShare: 0.5 };

/**
 * Runs a shard's steps one engine run at a time. Decode steps (one token) of different sessions
 * that wait together run as one batch (`Shard.forwardBatch`): decode reads every weight once per
 * run, so a batch of B costs little more than one step. Prefill steps run alone, in arrival order.
 */
export class EngineScheduler {
  private readonly queue: Job[] = [];
  private running: Promise<void> | undefined;
  /** Sizes of the runs so far (how much batching happened), most recent last, bounded. */
  readonly recentBatchSizes: number[] = [];

  constructor(
    private readonly shard: Shard,
    private readonly policy: BatchPolicy = DEFAULT_BATCH_POLICY,
  ) {}

  /** Runs `hidden` (T, hidden) through the shard for the sequence of `cache`. */
  forward(hidden: Float32Array, cache: KvCache): Promise<Float32Array> {
    return new Promise((resolve, reject) => {
      this.queue.push({ hidden, cache, resolve, reject });
      this.running ??= this.drain();
    });
  }

  /** Resolves once no step is queued or running. */
  async idle(): Promise<void> {
    while (this.running !== undefined) await this.running;
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.nextBatch();
        this.recentBatchSizes.push(batch.length);
        if (this.recentBatchSizes.length > 1024) this.recentBatchSizes.splice(0, 512);
        try {
          const outputs =
            batch.length === 1
              ? [await this.shard.forward(batch[0]!.hidden, batch[0]!.cache)]
              : await this.shard.forwardBatch(
                  batch.map((j) => j.hidden),
                  batch.map((j) => j.cache),
                );
          batch.forEach((j, i) => j.resolve(outputs[i]!));
        } catch (err) {
          for (const j of batch) j.reject(err); // no cache changed: a failed run updates none
        }
      }
    } finally {
      this.running = undefined;
    }
  }

  /** The first queued job, plus — when it is a decode step — other sessions' decode steps that fit. */
  private nextBatch(): Job[] {
    const first = this.queue.shift()!;
    const H = this.shard.config.hiddenSize;
    if (first.hidden.length !== H || !this.shard.batches) return [first];
    const batch = [first];
    const budget = this.policy.maxCopyShare * this.shard.weightBytes;
    let longest = first.cache.length + 1;
    for (let i = 0; i < this.queue.length && batch.length < this.policy.maxBatch; ) {
      const job = this.queue[i]!;
      const padded = Math.max(longest, job.cache.length + 1);
      const copyBytes = 2 * (batch.length + 1) * padded * this.shard.kvBytesPerToken; // in and out
      if (job.hidden.length === H && !batch.some((b) => b.cache === job.cache) && copyBytes <= budget) {
        batch.push(job);
        longest = padded;
        this.queue.splice(i, 1);
      } else {
        i++;
      }
    }
    return batch;
  }
}
