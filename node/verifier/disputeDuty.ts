import { ZeroHash, hexlify, randomBytes } from "ethers";
import type { Logger } from "pino";
import { receiptLeaf } from "../../protocol/receipt.js";
import type { Disputes } from "../../types/ethers-contracts/index.js";
import type { AuditedServer } from "./audit.js";
import { ChainCallError, chainCall } from "./chainErrors.js";
import { chainTime } from "./chainTime.js";
import { slashFalsePasses } from "./falsePasses.js";
import type { RoundSummary, VerifierDaemonOptions } from "./daemon.js";
import type { PostedBatches } from "./commitmentCheck.js";
import { auditReceipts } from "./receiptAudit.js";
import { VerifierConnection } from "./serverConnection.js";

/** IDisputes.Status */
const STATUS = { Open: 1n, Voting: 2n, Settled: 3n } as const;
const OUTCOMES = ["None", "ServerAtFault", "ServerCorrect", "NoQuorum"] as const;
const SERVER_AT_FAULT = 1n;

/** What the registration of a batch's server says it computed, for auditSession. */
export type AuditedServerOf = (server: string, firstLayer: number, lastLayer: number, batchId: bigint) => Promise<AuditedServer>;

/**
 * The verifier's part in disputes, one phase per round: as the challenger it draws the committee once
 * the draw block exists; as a committee member it re-executes the disputed receipt the way an audit
 * does, keeps its vote and a fresh salt in the state before the commitment leaves (a crash can never
 * leave a commitment it cannot reveal), commits in the commit phase and reveals after it; in either
 * role it settles the dispute once it is settleable (after the reveal deadline, or once every member
 * revealed).
 */
export class DisputeDuty {
  constructor(
    private readonly o: VerifierDaemonOptions,
    private readonly auditedServer: AuditedServerOf,
    private readonly batches: PostedBatches,
  ) {}

  /** Moves one dispute this verifier is in one phase on: draw, commit, reveal, settle. Failures are logged and tried again next round. */
  async advance(disputeId: bigint, summary: RoundSummary): Promise<void> {
    const { disputes } = this.o.contracts;
    const log = this.o.logger.child({ disputeId: disputeId.toString() });
    try {
      let d = await disputes.dispute(disputeId);
      const record = this.o.state.dispute(disputeId)!;
      if (d.status === STATUS.Settled) return this.noteSettled(disputeId, log);
      const now = await chainTime(this.o.provider);
      const latest = await this.o.provider.getBlockNumber();
      if (d.status === STATUS.Open && record.role === "challenger" && BigInt(latest) >= d.drawBlock && now <= d.commitDeadline) {
        await chainCall("drawing the committee", async () => (await disputes.drawCommittee(disputeId)).wait());
        log.info({ committee: await disputes.committee(disputeId) }, "committee drawn");
        d = await disputes.dispute(disputeId);
      }
      if (record.role === "member" && d.status === STATUS.Voting) await this.vote(disputeId, d, now, summary, log);
      const members = d.status === STATUS.Voting ? (await disputes.committee(disputeId)).length : 0;
      d = await disputes.dispute(disputeId);
      const allRevealed = members > 0 && Number(d.faultVotes) + Number(d.correctVotes) === members;
      if ((d.status === STATUS.Voting || d.status === STATUS.Open) && (now > d.revealDeadline || allRevealed)) {
        await chainCall("settling the dispute", async () => (await disputes.settle(disputeId)).wait()).catch((err: unknown) => {
          // another party settled it first
          if (!(err instanceof ChainCallError && err.errorName === "DisputesWrongStatus")) throw err;
        });
        summary.settled.push(disputeId);
        await this.noteSettled(disputeId, log);
      }
    } catch (err) {
      log.error({ err: (err as Error).message }, "dispute step failed: tried again next round");
    }
  }

  /** Committee duty: re-execute and commit in the commit phase; reveal in the reveal phase. */
  private async vote(disputeId: bigint, d: Awaited<ReturnType<Disputes["dispute"]>>, now: bigint, summary: RoundSummary, log: Logger): Promise<void> {
    const { disputes } = this.o.contracts;
    let record = this.o.state.dispute(disputeId)!;
    const onChain = await disputes.vote(disputeId, this.o.address);
    // a crash between sending and recording: the chain says how far the vote got
    if (record.vote !== undefined && !record.vote.committed && onChain.commitment !== ZeroHash) this.o.state.markVote(disputeId, "committed");
    if (record.vote !== undefined && !record.vote.revealed && onChain.revealed) this.o.state.markVote(disputeId, "revealed");
    if (record.vote === undefined && now <= d.commitDeadline) {
      const serverAtFault = await this.reexecute(d.server, d.batchId, d.receiptLeaf, log);
      this.o.state.recordVote(disputeId, serverAtFault, hexlify(randomBytes(32))); // kept before the commitment leaves
    }
    record = this.o.state.dispute(disputeId)!;
    const vote = record.vote;
    if (vote === undefined) return;
    if (!vote.committed && now <= d.commitDeadline) {
      const commitment = await disputes.voteCommitment(disputeId, this.o.address, vote.serverAtFault, vote.salt);
      await chainCall("committing a vote", async () => (await disputes.commitVote(disputeId, commitment)).wait());
      this.o.state.markVote(disputeId, "committed");
      summary.committed.push(disputeId);
      log.info({ serverAtFault: vote.serverAtFault }, "vote committed");
    } else if (vote.committed && !vote.revealed && now > d.commitDeadline && now <= d.revealDeadline) {
      await chainCall("revealing a vote", async () => (await disputes.revealVote(disputeId, vote.serverAtFault, vote.salt)).wait());
      this.o.state.markVote(disputeId, "revealed");
      summary.revealed.push(disputeId);
      log.info({ serverAtFault: vote.serverAtFault }, "vote revealed");
    }
  }

  /** Re-executes a disputed receipt the way an audit does; true when the server is at fault (wrong, withheld, unreachable). */
  private async reexecute(serverAddress: string, batchId: bigint, leaf: string, log: Logger): Promise<boolean> {
    const { commitments, staking } = this.o.contracts;
    const batch = await commitments.batch(batchId);
    const endpoint = (await staking.server(serverAddress)).endpoint;
    let connection: VerifierConnection;
    try {
      connection = await VerifierConnection.open(endpoint, this.o.key, this.o.address, this.o.connect);
    } catch (err) {
      log.warn({ endpoint, err: (err as Error).message }, "re-execution: server unreachable, counted as withheld");
      return true;
    }
    try {
      const listed = (await connection.listBatch(batchId)).find((r) => receiptLeaf(r.receipt) === leaf);
      if (listed === undefined) {
        log.warn({ leaf }, "re-execution: the server does not list the disputed receipt, counted as withheld");
        return true;
      }
      const server = await this.auditedServer(serverAddress, Number(batch.firstLayer), Number(batch.lastLayer), batchId);
      const [audit] = await auditReceipts(connection, this.o.replayers, server, [listed], { tolerance: this.o.tolerance, batches: this.batches });
      log.info({ leaf, verdict: audit!.verdict }, `re-executed the disputed receipt: ${audit!.reason}`);
      return audit!.verdict !== "pass";
    } finally {
      connection.close();
    }
  }

  /** Marks the dispute settled; as its challenger, first slashes recorded passes of a receipt found at fault. */
  private async noteSettled(disputeId: bigint, log: Logger): Promise<void> {
    const { disputes, commitments, auditLedger } = this.o.contracts;
    const d = await disputes.dispute(disputeId);
    if (auditLedger !== undefined && d.outcome === SERVER_AT_FAULT && this.o.state.dispute(disputeId)?.role === "challenger") {
      const postedBlock = (await commitments.batch(d.batchId)).postedBlock;
      const latest = await this.o.provider.getBlockNumber();
      const faulty = { disputeId, batchId: d.batchId, leaf: d.receiptLeaf, postedBlock };
      await slashFalsePasses(auditLedger, faulty, latest, this.o.maxBlocksPerQuery ?? 5000, log);
    }
    this.o.state.markSettled(disputeId);
    log.info({ outcome: OUTCOMES[Number(d.outcome)], faultVotes: Number(d.faultVotes), correctVotes: Number(d.correctVotes) }, "dispute settled");
  }
}
