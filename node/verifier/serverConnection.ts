import type { SigningKey } from "ethers";
import { signAuth } from "../../protocol/fetchAuth.js";
import { Link, dialServer } from "../../protocol/link.js";
import { DEFAULT_LIMITS, MAX_BATCH_PAGE, MessageType, type ServerInfo, type StoredStep } from "../../protocol/wire.js";
import type { Receipt } from "../../protocol/receipt.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import type { StepSource } from "./fetchPrefix.js";

export interface VerifierConnectOptions {
  /** Milliseconds to connect and receive the server's info frame (default 5000). */
  connectTimeoutMs?: number;
  /** Milliseconds to wait for each reply (default 30000): a server silent this long withholds. */
  requestTimeoutMs?: number;
  /** Largest frame accepted from the server (default the protocol's frame limit). */
  maxFrameBytes?: number;
  /** Receipts listed at most for one batch (default 100000): a server claiming more is refused. */
  maxBatchReceipts?: number;
}

export const DEFAULT_VERIFIER_CONNECT = {
  connectTimeoutMs: 5_000,
  requestTimeoutMs: 30_000,
  maxFrameBytes: DEFAULT_LIMITS.maxFrameBytes,
  maxBatchReceipts: 100_000,
} as const;

/** A receipt of a posted batch as the server lists it (evidence on chain with its batch's Merkle proof). */
export interface ListedReceipt {
  receipt: Receipt;
}

/**
 * The verifier's own connection to an audited server (node/ does not import client/): one Link,
 * authenticated as a registered verifier, that lists a posted batch's receipts (FetchBatch pages)
 * and fetches stored steps by session and step (FetchSessionStep). Every request has the link's
 * deadline and heartbeat; every reply is bounded by the wire limits.
 */
export class VerifierConnection implements StepSource {
  private constructor(
    readonly url: string,
    readonly info: ServerInfo,
    private readonly link: Link,
    private readonly maxBatchReceipts: number,
  ) {}

  /** Connects to `url` and authenticates with `key` (the registered verifier's, at `address`). */
  static async open(url: string, key: SigningKey, address: string, options: VerifierConnectOptions = {}): Promise<VerifierConnection> {
    const o = { ...DEFAULT_VERIFIER_CONNECT, ...options };
    const { ws, info, socket } = await dialServer(url, { connectTimeoutMs: o.connectTimeoutMs, maxFrameBytes: o.maxFrameBytes });
    const link = new Link(url, ws, {
      requestTimeoutMs: o.requestTimeoutMs,
      heartbeatIntervalMs: 1_000,
      heartbeatTimeoutMs: Math.max(3_500, Math.min(o.requestTimeoutMs, 10_000) + 1),
      limits: { maxFrameBytes: o.maxFrameBytes, maxStepTokens: info.maxStepTokens, hiddenSize: info.hiddenSize, maxRouteHops: DEFAULT_LIMITS.maxRouteHops },
      maxSendBytes: info.maxFrameBytes,
      socket,
    });
    const connection = new VerifierConnection(url, info, link, o.maxBatchReceipts);
    try {
      const signature = signAuth(key, info.chainId, info.server, info.challenge);
      await link.request({ type: MessageType.Authenticate, address, signature }, MessageType.Authenticated);
    } catch (err) {
      connection.close();
      throw err;
    }
    return connection;
  }

  /** Every receipt the server committed in batch `batchId`, in tree order (FetchBatch pages). */
  async listBatch(batchId: bigint): Promise<ListedReceipt[]> {
    const receipts: ListedReceipt[] = [];
    for (;;) {
      const page = await this.link.request({ type: MessageType.FetchBatch, batchId, offset: receipts.length, limit: MAX_BATCH_PAGE }, MessageType.BatchReceipts);
      if (page.total > this.maxBatchReceipts) {
        throw new InvalidArgumentError(`${this.url} lists ${page.total} receipts in batch ${batchId}, over the limit of ${this.maxBatchReceipts}`);
      }
      if (page.batchId !== batchId || page.offset !== receipts.length) {
        throw new InvalidArgumentError(`${this.url} answered with batch ${page.batchId} from ${page.offset}, asked batch ${batchId} from ${receipts.length}`);
      }
      receipts.push(...page.receipts.map((receipt) => ({ receipt })));
      if (receipts.length >= page.total) return receipts.slice(0, page.total);
      if (page.receipts.length === 0) throw new InvalidArgumentError(`${this.url} sent an empty page of batch ${batchId} at ${receipts.length} of ${page.total}`);
    }
  }

  fetchSessionStep(sessionId: string, step: bigint): Promise<StoredStep> {
    return this.link.request({ type: MessageType.FetchSessionStep, sessionId, step }, MessageType.StoredStep);
  }

  close(): void {
    this.link.close(1000, "verifier done");
  }
}
