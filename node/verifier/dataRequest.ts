import { formatEther, type Provider, type SigningKey } from "ethers";
import type { Logger } from "pino";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { receiptLeaf, type Receipt } from "../../protocol/receipt.js";
import type { Commitments, DataRequests, Disputes, EFedToken, Staking } from "../../types/ethers-contracts/index.js";
import { fromChain } from "../chain/dataResponder.js";
import type { AuditedServer } from "./audit.js";
import { ChainCallError, chainCall } from "./chainErrors.js";
import { chainTime } from "./chainTime.js";
import type { StepSource } from "./fetchPrefix.js";
import type { PostedBatches } from "./commitmentCheck.js";
import { auditReceipts, type ReceiptAudit, type ReplayShards } from "./receiptAudit.js";
import { VerifierConnection, type ListedReceipt, type VerifierConnectOptions } from "./serverConnection.js";

/** IDataRequests.Status */
const STATUS = { Open: 1n, Answered: 2n, Slashed: 3n } as const;

export interface DataRequestDutyOptions {
  /** The verifier's key (authenticates to servers). */
  key: SigningKey;
  /** The verifier's registered address (the requester). */
  address: string;
  provider: Provider;
  contracts: { staking: Staking; commitments: Commitments; disputes: Disputes; token: EFedToken; dataRequests: DataRequests };
  replayers: ReplayShards;
  /** Posted batches, for the commitments of the session's earlier steps (the daemon's, shared). */
  batches: PostedBatches;
  tolerance: number;
  logger: Logger;
  /** First block read for this verifier's DataRequested events (default 0). */
  fromBlock?: number;
  /** Blocks read per event query (default 5000). */
  maxBlocksPerQuery?: number;
  connect?: VerifierConnectOptions;
}

/** Opens a dispute against a receipt whose posted data failed the audit (the daemon's openDispute); returns its id. */
export type OpenDispute = (batchId: bigint, listed: ListedReceipt, proof: string[], leaf: string) => Promise<bigint>;

/** What one round of the duty did. */
export interface DataRequestRound {
  /** Requests answered on chain whose data this verifier audited, with the verdict. */
  audited: { requestId: bigint; audit: ReceiptAudit }[];
  /** Requests slashed (unanswered past their deadline). */
  slashed: bigint[];
  /** Disputes opened against posted data that failed its audit. */
  disputed: bigint[];
}

/** A request this verifier opened and has not finished with. */
interface OwnRequest {
  requestId: bigint;
  /** Block of the request: the answer (DataPosted) is read from it on, within the response period. */
  block: number;
  batchId: bigint;
  listed: ListedReceipt;
  proof: string[];
}

/**
 * The verifier's side of withheld data on chain (contracts/DataRequests.sol). When an audit finds a
 * committed step withheld (fetchPrefix: the server does not produce it), `request` asks for it on
 * chain with a bond. Each round, `advance` follows this verifier's requests:
 * - answered: the step's input and output are read from the DataPosted event (the contract already
 *   checked them against the receipt's hashes) and audited as a fetched step would be: the session's
 *   earlier steps are fetched from the server, the posted step fills the gap, and the prefix is
 *   replayed; posted data that fail the replay are disputed (`openDispute`);
 * - past the deadline unanswered: `slashUnanswered` (anyone may call it; a race lost to another
 *   caller is not an error).
 * The requests are found again from the chain (DataRequested events naming this requester, the
 * receipt and proof decoded from the request transaction), so a restart loses nothing.
 */
export class DataRequestDuty {
  private readonly maxBlocksPerQuery: number;
  private nextBlock: number;
  private readonly open = new Map<bigint, OwnRequest>();

  constructor(
    private readonly o: DataRequestDutyOptions,
    private readonly auditedServer: (server: string, firstLayer: number, lastLayer: number, batchId: bigint) => Promise<AuditedServer>,
    private readonly openDispute: OpenDispute,
  ) {
    this.maxBlocksPerQuery = o.maxBlocksPerQuery ?? 5000;
    this.nextBlock = o.fromBlock ?? 0;
    if (!Number.isSafeInteger(this.maxBlocksPerQuery) || this.maxBlocksPerQuery < 1) {
      throw new InvalidArgumentError(`maxBlocksPerQuery must be a positive integer, got ${this.maxBlocksPerQuery}`);
    }
  }

  /** Whether the step of `receipt` is small enough to be requested on chain (IDataRequests.Params.maxTokens); larger ones are disputed. */
  async canRequest(receipt: Receipt): Promise<boolean> {
    return BigInt(receipt.tokens) <= (await this.o.contracts.dataRequests.params()).maxTokens;
  }

  /**
   * Requests the data of a withheld receipt on chain, unless it is already requested (by anyone).
   * Returns the request id, or undefined when someone already requested it.
   */
  async request(batchId: bigint, listed: ListedReceipt, proof: string[]): Promise<bigint | undefined> {
    const { dataRequests, token } = this.o.contracts;
    const leaf = receiptLeaf(listed.receipt);
    const existing = await dataRequests.requestOfReceipt(leaf);
    if (existing !== 0n) {
      this.o.logger.info({ requestId: existing.toString(), leaf }, "not requested: the receipt's data was already requested on chain");
      return undefined;
    }
    const bond = (await dataRequests.params()).requestBond;
    const balance = await token.balanceOf(this.o.address);
    if (balance < bond) throw new InvalidArgumentError(`the data request bond is ${formatEther(bond)} tokens, ${this.o.address} holds ${formatEther(balance)}`);
    const address = await dataRequests.getAddress();
    await chainCall("approving the data request bond", async () => (await token.approve(address, bond)).wait());
    const receipt = await chainCall("requesting data on chain", async () => (await dataRequests.requestData(batchId, listed.receipt, proof)).wait());
    const event = receipt?.logs.map((l) => dataRequests.interface.parseLog(l)).find((e) => e?.name === "DataRequested");
    if (receipt === null || event === undefined || event === null) throw new Error("requestData emitted no DataRequested event");
    const requestId = event.args.requestId as bigint;
    this.open.set(requestId, { requestId, block: receipt.blockNumber, batchId, listed, proof });
    this.o.logger.warn({ requestId: requestId.toString(), batchId: batchId.toString(), leaf, deadline: (event.args.deadline as bigint).toString() }, "withheld step requested on chain");
    return requestId;
  }

  /** Finds this verifier's requests on chain, then audits the answered ones and slashes the expired ones. */
  async advance(): Promise<DataRequestRound> {
    const round: DataRequestRound = { audited: [], slashed: [], disputed: [] };
    await this.readOwnRequests();
    const now = await chainTime(this.o.provider);
    for (const own of [...this.open.values()]) {
      const log = this.o.logger.child({ requestId: own.requestId.toString() });
      try {
        const r = await this.o.contracts.dataRequests.request(own.requestId);
        if (r.status === STATUS.Answered) await this.auditPosted(own, now, log, round);
        else if (r.status === STATUS.Open && now > r.deadline) await this.slash(own.requestId, log, round);
        else if (r.status === STATUS.Slashed) this.open.delete(own.requestId);
      } catch (err) {
        log.error({ err: (err as Error).message }, "data request step failed: tried again next round");
      }
    }
    return round;
  }

  /** DataRequested events naming this verifier as the requester, with the receipt and proof decoded from their transactions. */
  private async readOwnRequests(): Promise<void> {
    const c = this.o.contracts.dataRequests;
    const latest = await this.o.provider.getBlockNumber();
    while (this.nextBlock <= latest) {
      const to = Math.min(latest, this.nextBlock + this.maxBlocksPerQuery - 1);
      for (const e of await c.queryFilter(c.filters.DataRequested(undefined, undefined, this.o.address), this.nextBlock, to)) {
        if (this.open.has(e.args.requestId) || (await c.request(e.args.requestId)).status === STATUS.Slashed) continue;
        const tx = await this.o.provider.getTransaction(e.transactionHash);
        const call = tx === null ? null : c.interface.parseTransaction({ data: tx.data });
        if (call === null || call.name !== "requestData") {
          this.o.logger.warn({ requestId: e.args.requestId.toString() }, "request not sent by requestData directly: its receipt cannot be read back, not followed");
          continue;
        }
        const [batchId, receipt, proof] = call.args as unknown as [bigint, Receipt, string[]];
        this.open.set(e.args.requestId, { requestId: e.args.requestId, block: e.blockNumber, batchId, listed: { receipt: receiptFields(receipt) }, proof: [...proof] });
      }
      this.nextBlock = to + 1;
    }
  }

  /**
   * Audits the posted step as a fetched one: earlier steps from the server, this step from the chain.
   * An audit that cannot run (the server unreachable for the earlier steps) is tried again each round
   * until the batch's challenge window closes: after it, a failure could not be disputed any more.
   */
  private async auditPosted(own: OwnRequest, now: bigint, log: Logger, round: DataRequestRound): Promise<void> {
    const { dataRequests, commitments, disputes } = this.o.contracts;
    const [posted] = await dataRequests.queryFilter(dataRequests.filters.DataPosted(own.requestId), own.block);
    if (posted === undefined) throw new Error(`request ${own.requestId} is answered but its DataPosted event was not found`);
    const step = { ...own.listed, input: fromChain(posted.args.input), output: fromChain(posted.args.output) };
    const r = own.listed.receipt;
    const batch = await commitments.batch(own.batchId);
    const server = await this.auditedServer(batch.server, Number(batch.firstLayer), Number(batch.lastLayer), own.batchId);
    const source = new PostedStepSource(r.sessionId, r.step, step, () => this.connectTo(batch.server));
    let audit: ReceiptAudit;
    try {
      [audit] = (await auditReceipts(source, this.o.replayers, server, [own.listed], { tolerance: this.o.tolerance, batches: this.o.batches })) as [ReceiptAudit];
    } catch (err) {
      if (now <= batch.challengeDeadline) throw err;
      this.open.delete(own.requestId);
      log.warn({ err: (err as Error).message }, "posted data not audited before the challenge window closed: given up");
      return;
    } finally {
      source.close();
    }
    round.audited.push({ requestId: own.requestId, audit });
    if (audit.verdict !== "fail") this.open.delete(own.requestId);
    if (audit.verdict === "pass") {
      log.info({ leaf: audit.leaf }, `audited from the data posted on chain: pass (${audit.reason})`);
      return;
    }
    if (audit.verdict === "withheld") {
      // an earlier step of the session is now withheld off chain: its receipt is another batch listing's business
      log.warn({ leaf: audit.leaf }, `posted data not auditable: ${audit.reason}`);
      return;
    }
    log.warn({ leaf: audit.leaf }, `audited from the data posted on chain: fail (${audit.reason})`);
    const existing = await disputes.disputeOfReceipt(audit.leaf);
    if (existing !== 0n) {
      this.open.delete(own.requestId);
      log.info({ disputeId: existing.toString() }, "not challenged: the receipt is already disputed");
      return;
    }
    // a dispute that cannot be opened yet (no bond, an RPC error) keeps the request open: audited and tried again next round
    const disputeId = await this.openDispute(own.batchId, own.listed, own.proof, audit.leaf);
    this.open.delete(own.requestId);
    round.disputed.push(disputeId);
    log.warn({ disputeId: disputeId.toString() }, "challenged the posted data");
  }

  private async slash(requestId: bigint, log: Logger, round: DataRequestRound): Promise<void> {
    const { dataRequests } = this.o.contracts;
    try {
      await chainCall("slashing an unanswered data request", async () => (await dataRequests.slashUnanswered(requestId)).wait());
      round.slashed.push(requestId);
      log.warn("data request unanswered past its deadline: server slashed");
    } catch (err) {
      // someone else slashed it first
      if (!(err instanceof ChainCallError && err.errorName === "DataRequestsNotOpen")) throw err;
    }
    this.open.delete(requestId);
  }

  private async connectTo(server: string): Promise<VerifierConnection> {
    const endpoint = (await this.o.contracts.staking.server(server)).endpoint;
    return VerifierConnection.open(endpoint, this.o.key, this.o.address, this.o.connect);
  }
}

/**
 * Steps of one session: the posted step from the chain, every other step from the server (connected
 * on first need, so a posted step 0 needs no connection at all).
 */
class PostedStepSource implements StepSource {
  private connection: Promise<VerifierConnection> | undefined;

  constructor(
    private readonly sessionId: string,
    private readonly step: bigint,
    private readonly posted: Awaited<ReturnType<StepSource["fetchSessionStep"]>>,
    private readonly connect: () => Promise<VerifierConnection>,
  ) {}

  async fetchSessionStep(sessionId: string, step: bigint): Promise<Awaited<ReturnType<StepSource["fetchSessionStep"]>>> {
    if (sessionId.toLowerCase() === this.sessionId.toLowerCase() && step === this.step) return this.posted;
    this.connection ??= this.connect();
    return (await this.connection).fetchSessionStep(sessionId, step);
  }

  close(): void {
    this.connection?.then((c) => c.close()).catch(() => undefined); // a connection that never opened has nothing to close
  }
}

/** A plain Receipt from an ethers Result (which carries extra keys and read-only arrays). */
function receiptFields(r: Receipt): Receipt {
  return {
    sessionId: r.sessionId,
    step: BigInt(r.step),
    firstLayer: Number(r.firstLayer),
    lastLayer: Number(r.lastLayer),
    variantId: r.variantId,
    inputHash: r.inputHash,
    outputHash: r.outputHash,
    tokens: Number(r.tokens),
    server: r.server,
  };
}
