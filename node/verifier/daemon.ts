import { formatEther, type Provider, type SigningKey } from "ethers";
import type { Logger } from "pino";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { MerkleTree } from "../../protocol/merkle.js";
import { receiptLeaf } from "../../protocol/receipt.js";
import type { AuditLedger, Commitments, DataRequests, Disputes, EFedToken, Staking } from "../../types/ethers-contracts/index.js";
import type { AuditedServer } from "./audit.js";
import { RETRY, type AuditState } from "./auditState.js";
import { chainCall } from "./chainErrors.js";
import { chainTime } from "./chainTime.js";
import { ChainPostedBatches, type PostedBatches } from "./commitmentCheck.js";
import { DataRequestDuty, type DataRequestRound } from "./dataRequest.js";
import { DisputeDuty } from "./disputeDuty.js";
import { AuditTooLargeError } from "./fetchPrefix.js";
import { PassRecorder } from "./passRecorder.js";
import { auditReceipts, type ReceiptAudit, type ReplayShards } from "./receiptAudit.js";
import { checkSampleRate, isSampled } from "./sample.js";
import { VerifierConnection, type ListedReceipt, type VerifierConnectOptions } from "./serverConnection.js";


export interface VerifierDaemonOptions {
  /** The verifier's key (authenticates to servers) and its address (staked, registered as a verifier). */
  key: SigningKey;
  address: string;
  provider: Provider;
  chainId: bigint;
  /**
   * Contracts connected to the verifier's signer. Without `dataRequests`, withheld steps are disputed.
   * Without `auditLedger` (a deployment made before it existed) passes stay in the local state only:
   * nothing records or rewards them on chain.
   */
  contracts: { staking: Staking; commitments: Commitments; disputes: Disputes; token: EFedToken; dataRequests?: DataRequests; auditLedger?: AuditLedger };
  /** Replay shards of the variant this verifier audits (loaded from its --model). */
  replayers: ReplayShards;
  state: AuditState;
  /** Probability with which each posted receipt is audited, in [0, 1] (0: committee duty only). */
  sampleRate: number;
  /** Largest step score that passes (compareOutput.ts; toleranceFor(model.compression)). */
  tolerance: number;
  logger: Logger;
  /** First block read for BatchPosted and CommitteeDrawn when the state has none (default 0). */
  fromBlock?: number;
  /** Blocks read per event query (default 5000). */
  maxBlocksPerQuery?: number;
  connect?: VerifierConnectOptions;
}

/** What one round did. */
export interface RoundSummary {
  batches: number;
  audited: number;
  failed: number;
  challenged: bigint[];
  /** Passed audits recorded on chain this round (AuditLedger), and the reward they earned. */
  passesRecorded: number;
  rewardEarned: bigint;
  committed: bigint[];
  revealed: bigint[];
  settled: bigint[];
  /** Withheld data on chain (dataRequest.ts), when the deployment has DataRequests. */
  dataRequests?: DataRequestRound;
}

/**
 * The verifier's loop, one round per `runOnce()` (the command calls it every --poll-ms; tests call
 * it directly, so nothing waits on a clock):
 *
 * 1. reads BatchPosted events up to the block before the latest, so each batch has a later block
 *    whose hash seeds its sample (sample.ts); batches of other variants are skipped;
 * 2. per batch: lists its receipts at the server's registered endpoint, checks they make the posted
 *    root, audits the sampled ones it has not audited before (receiptAudit.ts), challenges the
 *    first failed or withheld receipt of each session on chain, and records its passes of the batch
 *    on chain in one transaction (passRecorder.ts: trust for the server, a reward for the verifier);
 * 3. disputes (disputeDuty.ts): reads CommitteeDrawn events, re-executes each disputed receipt where it sits,
 *    commits its vote (the salt kept in the state first), reveals it in the reveal window; draws the
 *    committee of its own disputes, and settles every dispute it is in once it can be settled.
 *
 * Everything done is recorded in the AuditState, so a restart resumes where it stopped.
 */
export class VerifierDaemon {
  private readonly maxBlocksPerQuery: number;
  private readonly disputes: DisputeDuty;
  private readonly dataRequests: DataRequestDuty | undefined;
  private readonly passes: PassRecorder | undefined;
  /** Posted batches read from the chain, shared by every audit: a session's earlier steps must be committed. */
  private readonly batches: ChainPostedBatches;

  constructor(private readonly o: VerifierDaemonOptions) {
    checkSampleRate(o.sampleRate);
    this.maxBlocksPerQuery = o.maxBlocksPerQuery ?? 5000;
    if (!Number.isSafeInteger(this.maxBlocksPerQuery) || this.maxBlocksPerQuery < 1) {
      throw new InvalidArgumentError(`maxBlocksPerQuery must be a positive integer, got ${this.maxBlocksPerQuery}`);
    }
    this.batches = new ChainPostedBatches(o.contracts.commitments);
    this.disputes = new DisputeDuty(o, (server, first, last, batchId) => this.auditedServer(server, first, last, batchId), this.batches);
    this.dataRequests = withDataRequests({ ...o, batches: this.batches }, (server, first, last, batchId) => this.auditedServer(server, first, last, batchId), (...a) => this.openDispute(...a));
    const ledger = o.contracts.auditLedger;
    this.passes = ledger === undefined ? undefined : new PassRecorder({ ledger, disputes: o.contracts.disputes, provider: o.provider, state: o.state, logger: o.logger });
  }

  async runOnce(): Promise<RoundSummary> {
    const summary: RoundSummary = { batches: 0, audited: 0, failed: 0, challenged: [], passesRecorded: 0, rewardEarned: 0n, committed: [], revealed: [], settled: [] };
    const latest = await this.o.provider.getBlockNumber();
    for (const batchId of this.o.state.batchesToRetry()) await this.handleBatch(batchId, summary);
    await this.readEvents("batches", latest - 1, async (from, to) => {
      const c = this.o.contracts.commitments;
      for (const e of await c.queryFilter(c.filters.BatchPosted(), from, to)) {
        if (!this.o.state.batchHandled(e.args.batchId)) await this.handleBatch(e.args.batchId, summary);
      }
    });
    await this.readEvents("committees", latest, async (from, to) => {
      const d = this.o.contracts.disputes;
      for (const e of await d.queryFilter(d.filters.CommitteeDrawn(), from, to)) {
        if (!e.args.members.some((m) => m.toLowerCase() === this.o.address.toLowerCase())) continue;
        const dispute = await d.dispute(e.args.disputeId);
        this.o.state.recordDispute({ disputeId: e.args.disputeId, role: "member", batchId: dispute.batchId, leaf: dispute.receiptLeaf });
      }
    });
    for (const record of this.o.state.openDisputes()) await this.disputes.advance(record.disputeId, summary);
    if (this.dataRequests !== undefined) summary.dataRequests = await this.dataRequests.advance();
    const totals = this.o.state.auditCounts();
    this.o.logger.info(
      { block: latest, batches: summary.batches, audited: summary.audited, failed: summary.failed, challenged: summary.challenged.length, totals },
      `progress: block ${latest}, ${totals.pass + totals.fail + totals.withheld} receipts audited (${totals.fail} failed, ${totals.withheld} withheld), ${this.o.state.openDisputes().length} disputes open`,
    );
    return summary;
  }

  /** Reads events of kind `name` from the state's cursor up to block `to`, in bounded ranges, moving the cursor after each. */
  private async readEvents(name: "batches" | "committees", to: number, read: (from: number, to: number) => Promise<void>): Promise<void> {
    for (let from = this.o.state.cursor(name) ?? this.o.fromBlock ?? 0; from <= to; ) {
      const end = Math.min(to, from + this.maxBlocksPerQuery - 1);
      await read(from, end);
      this.o.state.setCursor(name, end + 1);
      from = end + 1;
    }
  }

  /** Audits the sampled receipts of one batch and challenges what fails; marks the batch handled (or to retry). */
  private async handleBatch(batchId: bigint, summary: RoundSummary): Promise<void> {
    const { commitments, staking } = this.o.contracts;
    const log = this.o.logger.child({ batchId: batchId.toString() });
    const batch = await commitments.batch(batchId);
    const skip = (outcome: string): void => {
      this.o.state.markBatch(batchId, batch.server, outcome);
      log.debug({ outcome }, "batch skipped");
    };
    if ((await commitments.batchVariant(batchId)).toLowerCase() !== this.o.replayers.variantId.toLowerCase()) return skip("another variant");
    if (batch.server.toLowerCase() === this.o.address.toLowerCase()) return skip("own batch");
    const now = await chainTime(this.o.provider);
    if (now > batch.challengeDeadline) return skip("challenge window closed");
    if (this.o.sampleRate === 0) return skip("sample rate 0");
    summary.batches++;
    const seed = (await this.o.provider.getBlock(Number(batch.postedBlock) + 1))?.hash;
    if (seed === undefined || seed === null) {
      this.o.state.markBatch(batchId, batch.server, `${RETRY} block ${batch.postedBlock + 1n} not yet available`);
      return;
    }
    const endpoint = (await staking.server(batch.server)).endpoint;
    if (endpoint === "") return skip("the server has no registered endpoint");

    let connection: VerifierConnection;
    try {
      connection = await VerifierConnection.open(endpoint, this.o.key, this.o.address, this.o.connect);
    } catch (err) {
      log.warn({ endpoint, err: (err as Error).message }, "server unreachable: batch retried next round");
      this.o.state.markBatch(batchId, batch.server, `${RETRY} ${(err as Error).message}`);
      return;
    }
    try {
      const listed = await connection.listBatch(batchId);
      const leaves = listed.map((r) => receiptLeaf(r.receipt));
      if (listed.length !== Number(batch.receiptCount) || listed.length === 0 || new MerkleTree(leaves).root !== batch.root) {
        log.warn({ listed: listed.length, posted: Number(batch.receiptCount) }, "the server's listing does not make the posted root");
        return skip("listing does not match the posted root");
      }
      const sampled = listed.filter((_, i) => isSampled(seed, leaves[i]!, this.o.sampleRate) && this.o.state.audit(leaves[i]!) === undefined);
      const server = await this.auditedServer(batch.server, Number(batch.firstLayer), Number(batch.lastLayer), batchId);
      const audits = await this.audit(connection, server, sampled, leaves, log);
      for (const a of audits) {
        this.o.state.recordAudit({ leaf: a.leaf, batchId, server: batch.server, verdict: a.verdict, reason: a.reason, auditedAtMs: Date.now() });
        summary.audited++;
        if (a.verdict === "pass") log.info({ leaf: a.leaf, server: batch.server }, `audited: pass (${a.reason})`);
        else {
          summary.failed++;
          log.warn({ leaf: a.leaf, server: batch.server, verdict: a.verdict }, `audited: ${a.verdict}: ${a.reason}`);
        }
      }
      const unchallenged = await this.challengeFailures(batchId, listed, leaves, summary);
      const unrecorded = await this.recordPasses({ batchId, postedAt: batch.postedAt, challengeDeadline: batch.challengeDeadline }, leaves, seed, summary);
      // a challenge or a pass record that could not be sent (no bond yet, an RPC failure) is tried again next round
      const outcome =
        unchallenged > 0 ? `${RETRY} ${unchallenged} challenges not sent` : unrecorded ? `${RETRY} passes not recorded` : `audited ${audits.length} of ${listed.length}`;
      this.o.state.markBatch(batchId, batch.server, outcome);
    } catch (err) {
      log.error({ err: (err as Error).message }, "batch audit failed: retried next round");
      this.o.state.markBatch(batchId, batch.server, `${RETRY} ${(err as Error).message}`);
    } finally {
      connection.close();
    }
  }

  /** Audits `receipts` of a batch whose listing (`committed`, every leaf of it) makes its posted root. */
  private async audit(
    connection: VerifierConnection,
    server: AuditedServer,
    receipts: readonly ListedReceipt[],
    committed: readonly string[],
    log: Logger,
  ): Promise<ReceiptAudit[]> {
    if (receipts.length === 0) return [];
    try {
      return await auditReceipts(connection, this.o.replayers, server, receipts, { tolerance: this.o.tolerance, batches: this.batches, committed });
    } catch (err) {
      if (!(err instanceof AuditTooLargeError)) throw err;
      log.warn({ err: err.message }, "receipts not audited: over the audit limits");
      return [];
    }
  }

  /**
   * Opens one dispute per session of the batch: against its earliest audited receipt that failed or
   * was withheld (this round's audits or an earlier round's), unless this verifier already disputed
   * one of the session. Returns how many disputes could not be opened.
   */
  private async challengeFailures(batchId: bigint, listed: readonly ListedReceipt[], leaves: readonly string[], summary: RoundSummary): Promise<number> {
    const earliest = new Map<string, number>();
    const disputed = new Set<string>();
    for (const [i, r] of listed.entries()) {
      const session = r.receipt.sessionId.toLowerCase();
      if (this.o.state.disputeOfLeaf(leaves[i]!) !== undefined) disputed.add(session);
      const verdict = this.o.state.audit(leaves[i]!)?.verdict;
      if (verdict === undefined || verdict === "pass") continue;
      const seen = earliest.get(session);
      if (seen === undefined || r.receipt.step < listed[seen]!.receipt.step) earliest.set(session, i);
    }
    let unsent = 0;
    const tree = new MerkleTree(leaves);
    for (const [session, i] of earliest) {
      if (disputed.has(session)) continue;
      const leaf = leaves[i]!;
      const why = this.o.state.audit(leaf)!;
      const existing = await this.o.contracts.disputes.disputeOfReceipt(leaf);
      if (existing !== 0n) {
        this.o.logger.info({ disputeId: existing.toString(), leaf }, "not challenged: another verifier already disputes this receipt");
        continue;
      }
      try {
        // withheld data is asked for on chain first (when small enough to post): the server may still post it
        if (why.verdict === "withheld" && (await this.dataRequests?.canRequest(listed[i]!.receipt)) === true) {
          await this.dataRequests!.request(batchId, listed[i]!, tree.proof(i));
          continue;
        }
        const disputeId = await this.openDispute(batchId, listed[i]!, tree.proof(i), leaf);
        summary.challenged.push(disputeId);
        this.o.logger.warn({ disputeId: disputeId.toString(), batchId: batchId.toString(), leaf, verdict: why.verdict }, `challenged: ${why.reason}`);
      } catch (err) {
        unsent++;
        this.o.logger.error({ batchId: batchId.toString(), leaf, err: (err as Error).message }, "could not challenge: tried again next round");
      }
    }
    return unsent;
  }

  /** Records this verifier's passes of the batch on chain; true when that failed (to try again). */
  private async recordPasses(
    batch: { batchId: bigint; postedAt: bigint; challengeDeadline: bigint },
    leaves: readonly string[],
    seed: string,
    summary: RoundSummary,
  ): Promise<boolean> {
    if (this.passes === undefined) return false;
    try {
      const done = await this.passes.record(batch, leaves, seed);
      if (done.kind === "recorded") {
        summary.passesRecorded += done.count;
        summary.rewardEarned += done.reward;
      }
      return false;
    } catch (err) {
      this.o.logger.error({ batchId: batch.batchId.toString(), err: (err as Error).message }, "could not record passes: tried again next round");
      return true;
    }
  }

  private async openDispute(batchId: bigint, r: ListedReceipt, proof: string[], leaf: string): Promise<bigint> {
    const { disputes, token, staking } = this.o.contracts;
    // the bond grows with the server stake the dispute will lock: what is free of it now, up to serverSlash
    const params = await disputes.params();
    const op = await staking.operator(r.receipt.server);
    const free = op.bonded + op.unbonding - op.locked;
    const locked = free < params.serverSlash ? free : params.serverSlash;
    const bond = params.challengeBond + (locked * params.lockBondBps) / 10_000n; // IDisputes.bondFor
    const balance = await token.balanceOf(this.o.address);
    if (balance < bond) throw new InvalidArgumentError(`the challenge bond is ${formatEther(bond)} tokens, ${this.o.address} holds ${formatEther(balance)}`);
    const disputesAddress = await disputes.getAddress();
    await chainCall("approving the challenge bond", async () => (await token.approve(disputesAddress, bond)).wait());
    const receipt = await chainCall("opening a dispute", async () => (await disputes.openDispute(batchId, r.receipt, proof)).wait());
    const opened = receipt?.logs.map((l) => disputes.interface.parseLog(l)).find((e) => e?.name === "DisputeOpened");
    if (opened === undefined || opened === null) throw new Error(`openDispute emitted no DisputeOpened event`);
    const disputeId = opened.args.disputeId as bigint;
    this.o.state.recordDispute({ disputeId, role: "challenger", batchId, leaf });
    return disputeId;
  }

  private async auditedServer(server: string, firstLayer: number, lastLayer: number, batchId: bigint): Promise<AuditedServer> {
    return { server, variantId: await this.o.contracts.commitments.batchVariant(batchId), firstLayer, lastLayer };
  }
}

/** The data-request duty when the deployment has DataRequests (dataRequest.ts). */
function withDataRequests(
  o: VerifierDaemonOptions & { batches: PostedBatches },
  auditedServer: ConstructorParameters<typeof DataRequestDuty>[1],
  openDispute: ConstructorParameters<typeof DataRequestDuty>[2],
): DataRequestDuty | undefined {
  const { dataRequests, ...rest } = o.contracts;
  if (dataRequests === undefined) return undefined;
  return new DataRequestDuty({ ...o, contracts: { ...rest, dataRequests } }, auditedServer, openDispute);
}
