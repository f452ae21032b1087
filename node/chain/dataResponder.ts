import { getBytes, type Provider } from "ethers";
import type { Logger } from "pino";
import { ACTIVATION_ENCODINGS, ENCODING_CODE, type EncodedActivations } from "../../protocol/activations.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import type { DataRequests } from "../../types/ethers-contracts/index.js";
import type { ActivationStore } from "../store/activationStore.js";

/** IDataRequests.Status.Open */
const OPEN = 1n;

export interface DataResponderOptions {
  /** The DataRequests contract, connected to the server's staked signer (only the server may answer). */
  dataRequests: DataRequests;
  provider: Provider;
  /** The server's staked address: requests naming it are answered. */
  address: string;
  store: ActivationStore;
  logger: Logger;
  /** First block read for DataRequested (default 0). */
  fromBlock?: number;
  /** Blocks read per event query (default 5000). */
  maxBlocksPerQuery?: number;
  /** Milliseconds between rounds when started with `start()` (default 15000). */
  pollMs?: number;
}

/** What one round did. */
export interface ResponderRound {
  answered: bigint[];
  /** Requests whose answer failed this round (tried again next round while the deadline allows). */
  failed: bigint[];
  /** Requests that can no longer be answered (past the deadline, or the step is not in the store). */
  abandoned: bigint[];
}

/**
 * The server's side of withheld data on chain (contracts/DataRequests.sol): follows DataRequested
 * events naming this server and answers each open request from the activation store by posting the
 * step's input and output with `postData` before its deadline. A failed answer (an RPC error, a
 * reverted transaction) is logged and tried again each round until the deadline passes. A request
 * whose step is not in the store cannot be answered and is logged as an error: the server will be
 * slashed for it.
 */
export class DataResponder {
  private readonly maxBlocksPerQuery: number;
  private readonly pollMs: number;
  private nextBlock: number;
  /** Request id → receipt leaf, for open requests not yet answered. */
  private readonly pending = new Map<bigint, string>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: DataResponderOptions) {
    this.maxBlocksPerQuery = o.maxBlocksPerQuery ?? 5000;
    this.pollMs = o.pollMs ?? 15_000;
    this.nextBlock = o.fromBlock ?? 0;
    for (const [name, v, min] of [["maxBlocksPerQuery", this.maxBlocksPerQuery, 1], ["pollMs", this.pollMs, 1], ["fromBlock", this.nextBlock, 0]] as const) {
      if (!Number.isSafeInteger(v) || v < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got ${v}`);
    }
  }

  /** Runs a round now and then every `pollMs` (rounds never overlap); errors are logged. */
  start(): void {
    if (this.timer !== undefined) return;
    const round = (): void => {
      this.running = this.running.then(() => this.runOnce()).catch((err: unknown) => this.o.logger.error({ err }, "data request round failed"));
    };
    round();
    this.timer = setInterval(round, this.pollMs);
  }

  /** Stops the timer and waits for a round under way. */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** Reads new requests naming this server and answers every open one it can. */
  async runOnce(): Promise<ResponderRound> {
    const round: ResponderRound = { answered: [], failed: [], abandoned: [] };
    const c = this.o.dataRequests;
    const latest = await this.o.provider.getBlockNumber();
    while (this.nextBlock <= latest) {
      const to = Math.min(latest, this.nextBlock + this.maxBlocksPerQuery - 1);
      for (const e of await c.queryFilter(c.filters.DataRequested(undefined, this.o.address), this.nextBlock, to)) {
        this.pending.set(e.args.requestId, e.args.receiptLeaf);
        this.o.logger.warn({ requestId: e.args.requestId.toString(), leaf: e.args.receiptLeaf, deadline: e.args.deadline.toString() }, "data requested on chain");
      }
      this.nextBlock = to + 1;
    }
    const now = BigInt((await this.o.provider.getBlock("latest"))?.timestamp ?? 0);
    for (const [requestId, leaf] of this.pending) await this.answer(requestId, leaf, now, round);
    return round;
  }

  private async answer(requestId: bigint, leaf: string, now: bigint, round: ResponderRound): Promise<void> {
    const log = this.o.logger.child({ requestId: requestId.toString(), leaf });
    try {
      const request = await this.o.dataRequests.request(requestId);
      if (request.status !== OPEN) {
        this.pending.delete(requestId);
        return;
      }
      if (now > request.deadline) {
        this.pending.delete(requestId);
        round.abandoned.push(requestId);
        log.error({ deadline: request.deadline.toString() }, "data request deadline passed unanswered: the stake locked for it will be slashed");
        return;
      }
      const step = this.o.store.get(leaf.toLowerCase());
      if (step === undefined) {
        this.pending.delete(requestId);
        round.abandoned.push(requestId);
        log.error("the requested step is not in the store: cannot answer, the stake locked for it will be slashed");
        return;
      }
      const tx = await this.o.dataRequests.postData(requestId, onChain(step.input), onChain(step.output));
      await tx.wait();
      this.pending.delete(requestId);
      round.answered.push(requestId);
      log.info({ tx: tx.hash, bytes: step.input.payload.byteLength + step.output.payload.byteLength }, "data request answered on chain");
    } catch (err) {
      round.failed.push(requestId);
      log.error({ err: (err as Error).message }, "answering a data request failed: tried again next round");
    }
  }
}

/**
 * The first block no more than `seconds` older than the latest block (binary search, about
 * log2(blocks) reads): requests opened before it are past any response period that long, so a
 * restarted server need not read the chain from its start.
 */
export async function blockSecondsAgo(provider: Provider, seconds: bigint): Promise<number> {
  const latest = await provider.getBlock("latest");
  if (latest === null) throw new Error("the RPC endpoint has no latest block");
  const since = BigInt(latest.timestamp) - seconds;
  let [low, high] = [0, latest.number];
  while (low < high) {
    const mid = Math.floor((low + high) / 2);
    const block = await provider.getBlock(mid);
    if (block !== null && BigInt(block.timestamp) >= since) high = mid;
    else low = mid + 1;
  }
  return low;
}

/** IDataRequests.Activations: encoded activations as the contract takes and emits them. */
export interface ActivationsOnChain {
  encoding: number;
  rows: number;
  cols: number;
  payload: Uint8Array;
}

/** IDataRequests.Activations of an encoded tensor. */
export function onChain(a: EncodedActivations): ActivationsOnChain {
  return { encoding: ENCODING_CODE[a.encoding], rows: a.rows, cols: a.cols, payload: a.payload };
}

/** Encoded activations from a DataPosted event's tuple; an encoding this side does not know is an error naming it. */
export function fromChain(a: { encoding: bigint; rows: bigint; cols: bigint; payload: string }): EncodedActivations {
  const encoding = ACTIVATION_ENCODINGS.find((e) => BigInt(ENCODING_CODE[e]) === a.encoding);
  if (encoding === undefined) throw new InvalidArgumentError(`posted activations have encoding ${a.encoding}, expected one of ${ACTIVATION_ENCODINGS.map((e) => ENCODING_CODE[e]).join(", ")}`);
  return { encoding, rows: Number(a.rows), cols: Number(a.cols), payload: getBytes(a.payload) };
}
