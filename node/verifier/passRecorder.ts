import { formatEther, type Provider } from "ethers";
import type { Logger } from "pino";
import { MerkleTree } from "../../protocol/merkle.js";
import type { AuditLedger, Disputes } from "../../types/ethers-contracts/index.js";
import type { AuditState } from "./auditState.js";
import { chainCall } from "./chainErrors.js";
import { chainTime } from "./chainTime.js";
import { isSampled } from "./sample.js";

/** Parts per 10⁹ in which AuditLedger states its sample rate. */
const PPB = 1_000_000_000;

/** What recording one batch's passes did. */
export type PassRecording =
  | { kind: "recorded"; count: number; credited: bigint; reward: bigint }
  | { kind: "none"; why: string };

export interface PassRecorderOptions {
  ledger: AuditLedger;
  disputes: Disputes;
  provider: Provider;
  state: AuditState;
  logger: Logger;
}

/**
 * Puts this verifier's passed audits of one batch on chain, in one AuditLedger.recordPasses
 * transaction: the listed receipts it passed (this round or before) that count on chain (sampled at
 * the ledger's rate, which may be lower than the daemon's; not disputed by anyone), in ascending
 * leaf order (at most the ledger's MAX_LEAVES), each with its proof under the batch's root. At most once per batch (the state
 * remembers it); nothing is sent after the ledger's record deadline (the first half of the batch's
 * challenge window). The server gains trust and the verifier a reward; a pass later shown wrong
 * costs the verifier stake, so only receipts it actually re-executed and passed are recorded.
 */
export class PassRecorder {
  constructor(private readonly o: PassRecorderOptions) {}

  /** `leaves`: the batch's listed leaves, in root order; `seed`: the hash of the block after the batch's. */
  async record(
    batch: { batchId: bigint; postedAt: bigint; challengeDeadline: bigint },
    leaves: readonly string[],
    seed: string,
  ): Promise<PassRecording> {
    const { ledger, state } = this.o;
    if (state.passesRecorded(batch.batchId) !== undefined) return { kind: "none", why: "already recorded" };
    const deadline = batch.postedAt + (batch.challengeDeadline - batch.postedAt) / 2n;
    if ((await chainTime(this.o.provider)) >= deadline) return { kind: "none", why: "record deadline passed" };
    const rate = Number((await ledger.params()).sampleRatePpb) / PPB;
    const chosen: number[] = [];
    for (const [i, leaf] of leaves.entries()) {
      if (state.audit(leaf)?.verdict !== "pass" || !isSampled(seed, leaf, rate)) continue;
      if ((await this.o.disputes.disputeOfReceipt(leaf)) !== 0n) continue;
      chosen.push(i);
    }
    if (chosen.length === 0) return { kind: "none", why: "no pass sampled at the on-chain rate" };
    chosen.sort((a, b) => (BigInt(leaves[a]!) < BigInt(leaves[b]!) ? -1 : 1));
    // one record per batch holds at most MAX_LEAVES passes: the rest earn nothing (a sample is rarely that large)
    chosen.splice(Number(await ledger.MAX_LEAVES()));
    const tree = new MerkleTree(leaves);
    const sorted = chosen.map((i) => leaves[i]!);
    const mined = await chainCall("recording passed audits", async () =>
      (await ledger.recordPasses(batch.batchId, sorted, chosen.map((i) => tree.proof(i)))).wait(),
    );
    const event = mined?.logs.map((l) => ledger.interface.parseLog(l)).find((e) => e?.name === "PassesRecorded");
    if (event === undefined || event === null) throw new Error("recordPasses emitted no PassesRecorded event");
    const credited = event.args.credited as bigint;
    const reward = event.args.reward as bigint;
    state.markPassesRecorded(batch.batchId, sorted.length, reward);
    this.o.logger.info(
      { batchId: batch.batchId.toString(), passes: sorted.length, credited: credited.toString(), reward: formatEther(reward) },
      `recorded ${sorted.length} passed audits on chain (reward ${formatEther(reward)} tokens)`,
    );
    return { kind: "recorded", count: sorted.length, credited, reward };
  }
}
