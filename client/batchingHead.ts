import { EngineError } from "../engine/errors.js";
import type { Head } from "../engine/runtime/head.js";
import { gatherArrivals } from "../protocol/gather.js";

/** What a generation loop needs of the LM head side: embeddings in, logits out. */
export type TokenHead = Pick<Head, "config" | "embed" | "logits">;

/** Runs whose sizes set how many requests a run waits for (see the class doc). */
const RECENT = 16;

interface Request {
  hidden: Float32Array;
  resolve: (logits: Float32Array) => void;
  reject: (err: unknown) => void;
}

/**
 * One Head shared by many concurrent sequences of one client process (a gateway serving many
 * users): logits requests that wait together run as one engine run of all their rows, so the LM
 * head — the largest matrix of a small model — is read once per batch instead of once per sequence.
 * Results are the rows a separate call would return.
 *
 * Sequences whose layers ran in one server batch come back a little apart (the last server sends
 * their outputs one after another). A run started on the first would split the group, and every
 * later stage would then run the parts separately; so while fewer requests wait than the largest of
 * the last batches held, a run waits up to `gatherMs` for another request, again after each arrival.
 */
export class BatchingHead implements TokenHead {
  private readonly queue: Request[] = [];
  private running = false;
  /** Requests per run, the last RECENT runs (most recent last). */
  readonly recentBatchSizes: number[] = [];

  constructor(
    private readonly head: Head,
    /** Rows (positions) in one run at most. */
    private readonly maxRows = 64,
    /** How long a run waits for the next request of a group (ms; 0: never waits). */
    private readonly gatherMs = 2,
  ) {
    if (!Number.isFinite(gatherMs) || gatherMs < 0) throw new EngineError("BAD_OPTION", `BatchingHead gatherMs must be a number ≥ 0, got ${gatherMs}`);
  }

  get config(): Head["config"] {
    return this.head.config;
  }

  embed(ids: readonly number[]): Float32Array {
    return this.head.embed(ids);
  }

  logits(hidden: Float32Array): Promise<Float32Array> {
    const H = this.head.config.hiddenSize;
    if (hidden.length === 0 || hidden.length % H !== 0) {
      // refused alone: a ragged request would shift every other request's rows in a batch
      return Promise.reject(new EngineError("BAD_HIDDEN", `hidden states of ${hidden.length} floats are not whole ${H}-wide rows`));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ hidden, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async gather(): Promise<void> {
    const expected = Math.max(0, ...this.recentBatchSizes);
    await gatherArrivals(() => this.queue.length, () => expected, this.gatherMs);
  }

  private async drain(): Promise<void> {
    this.running = true;
    const H = this.head.config.hiddenSize;
    const V = this.head.config.vocabSize;
    try {
      // requests made in the same turn of the event loop run together
      await new Promise((resolve) => setImmediate(resolve));
      while (this.queue.length > 0) {
        await this.gather();
        const batch: Request[] = [this.queue.shift()!];
        let rows = batch[0]!.hidden.length / H;
        while (this.queue.length > 0 && rows + this.queue[0]!.hidden.length / H <= this.maxRows) {
          const next = this.queue.shift()!;
          rows += next.hidden.length / H;
          batch.push(next);
        }
        this.recentBatchSizes.push(batch.length);
        if (this.recentBatchSizes.length > RECENT) this.recentBatchSizes.shift();
        try {
          if (batch.length === 1) {
            batch[0]!.resolve(await this.head.logits(batch[0]!.hidden));
            continue;
          }
          const all = new Float32Array(rows * H);
          let offset = 0;
          for (const r of batch) {
            all.set(r.hidden, offset);
            offset += r.hidden.length;
          }
          const logits = await this.head.logits(all);
          let row = 0;
          for (const r of batch) {
            const n = r.hidden.length / H;
            r.resolve(logits.slice(row * V, (row + n) * V));
            row += n;
          }
        } catch (err) {
          for (const r of batch) r.reject(err);
        }
      }
    } finally {
      this.running = false;
    }
  }
}
