import type { Logger } from "pino";
import { MerkleTree } from "../../protocol/merkle.js";
import { receiptLeaf } from "../../protocol/receipt.js";
import type { Commitments } from "../../types/ethers-contracts/index.js";
import type { ActivationStore } from "../store/activationStore.js";

export interface CommitterOptions {
  commitments: Commitments;
  store: ActivationStore;
  /** Most receipts under one root. */
  maxReceiptsPerBatch: number;
  logger: Logger;
}

/**
 * Posts the Merkle root of the server's not-yet-committed receipts to the Commitments contract,
 * one batch per call, and records which leaves went into which batch so proofs can be rebuilt.
 * A batch is bound on chain to one registration (variant and layer range), so one batch holds the
 * oldest uncommitted receipts that share the first one's variant and range; the rest wait for the
 * next call.
 */
export class Committer {
  private lastToSeconds = 0n;
  /** Commits run one after another: two at once would post the same uncommitted receipts twice. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: CommitterOptions) {}

  /** Posts one batch if there is anything to post (after any commit already under way); returns its id, or undefined. */
  commitOnce(): Promise<number | undefined> {
    const run = this.queue.then(() => this.commit());
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async commit(): Promise<number | undefined> {
    const pending = this.o.store.uncommitted(this.o.maxReceiptsPerBatch);
    if (pending.length === 0) return undefined;
    const head = pending[0]!.receipt;
    const sameWork = pending.findIndex(
      (s) => s.receipt.variantId !== head.variantId || s.receipt.firstLayer !== head.firstLayer || s.receipt.lastLayer !== head.lastLayer,
    );
    const steps = sameWork === -1 ? pending : pending.slice(0, sameWork);
    const leafHashes = steps.map((s) => receiptLeaf(s.receipt));
    const tree = new MerkleTree(leafHashes);
    const from = BigInt(Math.floor(steps[0]!.createdAtMs / 1000));
    const to = BigInt(Math.floor(steps[steps.length - 1]!.createdAtMs / 1000));
    // The contract wants previousTo <= from <= to <= block time; the chain's clock may lag ours.
    const block = await this.o.commitments.runner?.provider?.getBlock("latest");
    const chainNow = BigInt(block?.timestamp ?? Math.floor(Date.now() / 1000));
    const clamp = (t: bigint): bigint => (t < this.lastToSeconds ? this.lastToSeconds : t > chainNow ? chainNow : t);
    const fromSeconds = clamp(from);
    const toSeconds = clamp(to) < fromSeconds ? fromSeconds : clamp(to);
    const tx = await this.o.commitments.postBatch(tree.root, head.variantId, head.firstLayer, head.lastLayer, steps.length, fromSeconds, toSeconds);
    const receipt = await tx.wait();
    const event = receipt?.logs
      .map((log) => {
        try {
          return this.o.commitments.interface.parseLog(log);
        } catch {
          return null;
        }
      })
      .find((e) => e?.name === "BatchPosted");
    if (event === undefined || event === null) throw new Error(`postBatch ${tx.hash} emitted no BatchPosted event`);
    const batchId = Number(event.args.batchId as bigint);
    this.o.store.markCommitted(batchId, tree.root, leafHashes, Date.now());
    this.lastToSeconds = toSeconds;
    this.o.logger.info({ batchId, receipts: steps.length, root: tree.root }, "commitment batch posted");
    return batchId;
  }
}
