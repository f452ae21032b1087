import type { Logger } from "pino";
import { MerkleTree } from "../../protocol/merkle.js";
import { receiptLeaf } from "../../protocol/receipt.js";
import { Staking__factory, type Commitments } from "../../types/ethers-contracts/index.js";
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
 * A batch is bound on chain to the server's current registration (variant and layer range), so a
 * batch holds only receipts of that work. Receipts of an earlier registration can never be committed
 * any more; they are skipped (with a warning) rather than retried forever.
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
    const work = await this.registeredWork();
    if (work === undefined) {
      this.o.logger.warn({ receipts: pending.length }, "not registered as a server: receipts stay uncommitted");
      return undefined;
    }
    const steps = pending.filter(
      (s) => s.receipt.variantId === work.variantId && s.receipt.firstLayer === work.firstLayer && s.receipt.lastLayer === work.lastLayer,
    );
    if (steps.length < pending.length) {
      this.o.logger.warn({ skipped: pending.length - steps.length, ...work }, "receipts of an earlier registration cannot be committed");
    }
    if (steps.length === 0) return undefined;
    const head = steps[0]!.receipt;
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

  /** The variant and layer range this server is registered for now, read from Staking; undefined when not a server. */
  private async registeredWork(): Promise<{ variantId: string; firstLayer: number; lastLayer: number } | undefined> {
    const runner = this.o.commitments.runner;
    if (runner === null || !("getAddress" in runner) || typeof runner.getAddress !== "function") {
      throw new Error("the Commitments contract given to the committer has no signer");
    }
    const me = (await runner.getAddress()) as string;
    const staking = Staking__factory.connect(await this.o.commitments.staking(), runner);
    const [registrationId, variantId, firstLayer, lastLayer] = await staking.serverRegistration(me);
    if (registrationId === 0n) return undefined;
    return { variantId, firstLayer: Number(firstLayer), lastLayer: Number(lastLayer) };
  }
}
