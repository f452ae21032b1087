import { getAddress } from "ethers";
import { verifyMerkleProof } from "../../protocol/merkle.js";
import type { Commitments } from "../../types/ethers-contracts/index.js";
import type { StepEvidence } from "./audit.js";

/** A posted batch as the chain holds it: who posted it and its Merkle root. */
export interface PostedBatch {
  server: string;
  root: string;
}

/** Posted batches by id; undefined for an id no batch has (yet). */
export interface PostedBatches {
  batch(batchId: bigint): Promise<PostedBatch | undefined>;
}

/** Batches cached at most, by the chain reader below (a batch is ~100 bytes). */
const MAX_CACHED_BATCHES = 4096;

/**
 * Posted batches read from the Commitments contract. A posted batch never changes, so each is read
 * once (the most recent MAX_CACHED_BATCHES are kept); an id past the batch count is answered as
 * absent, not with the contract's revert, so a server that names a made-up batch is refused and the
 * audit goes on.
 */
export class ChainPostedBatches implements PostedBatches {
  private readonly cache = new Map<bigint, Promise<PostedBatch>>();
  private count = 0n;

  constructor(private readonly commitments: Commitments) {}

  async batch(batchId: bigint): Promise<PostedBatch | undefined> {
    if (batchId < 0n) return undefined;
    if (batchId >= this.count) this.count = await this.commitments.batchCount();
    if (batchId >= this.count) return undefined;
    let read = this.cache.get(batchId);
    if (read === undefined) {
      read = this.commitments.batch(batchId).then((b) => ({ server: b.server, root: b.root }));
      read.catch(() => this.cache.delete(batchId)); // an RPC failure is not kept
      this.cache.set(batchId, read);
      if (this.cache.size > MAX_CACHED_BATCHES) this.cache.delete(this.cache.keys().next().value!);
    }
    return read;
  }
}

/**
 * Why a fetched step's receipt is not one the audited server committed on chain, or undefined when it
 * is: its leaf is one of `committed` (receipts the caller already holds as committed: a batch listing
 * that makes its posted root, a receipt whose proof a contract checked), or the step comes with a
 * Merkle proof into a batch that `server` posted. An audit must rest only on steps the server
 * committed: a step it never committed could be made up after the fact (by the server, to hide an
 * earlier faulty step behind a correct one, or by anyone between it and the verifier).
 */
export async function commitmentProblem(
  evidence: StepEvidence,
  /** The evidence's receipt leaf (receiptLeaf), computed once by the caller. */
  leaf: string,
  server: string,
  committed: ReadonlySet<string>,
  batches: PostedBatches,
): Promise<string | undefined> {
  if (committed.has(leaf)) return undefined;
  if (evidence.batch === undefined) return `receipt ${leaf} comes with no batch proof: the server has not committed it`;
  const { batchId, proof } = evidence.batch;
  const posted = await batches.batch(batchId);
  if (posted === undefined) return `receipt ${leaf} is said to be in batch ${batchId}, which was never posted`;
  if (getAddress(posted.server) !== getAddress(server)) return `receipt ${leaf} is said to be in batch ${batchId}, which ${posted.server} posted, not ${server}`;
  if (!verifyMerkleProof(posted.root, leaf, proof)) return `receipt ${leaf}'s proof does not lead to the root of batch ${batchId}`;
  return undefined;
}
