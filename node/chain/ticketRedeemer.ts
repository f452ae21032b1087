import type { Logger } from "pino";
import { decodeContractError, describeChainError } from "../../protocol/contractErrors.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import type { TicketBroker } from "../../types/ethers-contracts/index.js";
import type { ChainSender } from "../server/ticketGate.js";
import type { StoredWinner, TicketStore, WinningTicket } from "../store/ticketStore.js";

export interface TicketRedeemerOptions {
  /** TicketBroker, connected to the server's staked key (the tickets' recipient). */
  broker: TicketBroker;
  store: TicketStore;
  /** Attempts per winner before it is marked failed (default 5). */
  maxAttempts?: number;
  /** Milliseconds between passes over winners still pending (default 5000). */
  pollMs?: number;
  logger: Logger;
}

/**
 * Errors after which trying again cannot help: the ticket is spent, expired, not this server's, or
 * its client has nothing left for it. Anything else (an RPC failure, a nonce race) is retried.
 */
const FINAL_ERRORS: ReadonlySet<string> = new Set([
  "TicketAlreadyRedeemed",
  "TicketExpired",
  "TicketWrongRecipient",
  "TicketBadSigner",
  "TicketBadRecipientRand",
  "TicketNotWinning",
  "TicketZeroFaceValue",
  "TicketSenderUnfunded",
]);

/**
 * Turns winning tickets into tokens. `add` stores a winner (before the gate acknowledges the ticket)
 * and redeems it at once; a redemption that fails is logged with its decoded reason and tried again
 * at the next pass, up to `maxAttempts`, unless the reason is final (then it is marked failed and
 * logged as an error, never silently dropped). Winners left pending by a previous run are redeemed
 * by the first pass, so a restart loses nothing.
 */
export class TicketRedeemer {
  private readonly maxAttempts: number;
  private readonly pollMs: number;
  private timer: NodeJS.Timeout | undefined;
  /** One redemption at a time: the server's key sends them in nonce order. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: TicketRedeemerOptions) {
    this.maxAttempts = o.maxAttempts ?? 5;
    this.pollMs = o.pollMs ?? 5_000;
    if (!Number.isSafeInteger(this.maxAttempts) || this.maxAttempts < 1) throw new InvalidArgumentError(`ticket redeemer maxAttempts must be a positive integer, got ${this.maxAttempts}`);
    if (!Number.isSafeInteger(this.pollMs) || this.pollMs < 1) throw new InvalidArgumentError(`ticket redeemer pollMs must be a positive integer, got ${this.pollMs}`);
  }

  /** Stores a winner, then queues its redemption (not awaited: the gate answers the client meanwhile). */
  add(hash: string, w: WinningTicket): void {
    this.o.store.add(hash, w);
    void this.pass();
  }

  /** Starts periodic passes; the first runs at once. */
  start(): void {
    const tick = (): void => {
      void this.pass().finally(() => {
        if (this.timer !== undefined) this.timer = setTimeout(tick, this.pollMs).unref();
      });
    };
    this.timer = setTimeout(tick, 0).unref();
  }

  /** Stops the passes and finishes the one under way; pending winners stay stored. */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.queue;
  }

  /** Redeems every pending winner once (after any pass under way). Returns how many were redeemed. */
  pass(): Promise<number> {
    const run = this.queue.then(async () => {
      let redeemed = 0;
      for (const w of this.o.store.pending()) if (await this.redeem(w)) redeemed++;
      return redeemed;
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async redeem(w: StoredWinner): Promise<boolean> {
    try {
      const receipt = await (await this.o.broker.redeemWinningTicket(w.ticket, w.signature, w.recipientRand)).wait();
      this.o.store.markRedeemed(w.hash);
      this.o.logger.info({ ticket: w.hash, sender: w.ticket.sender, faceValue: w.ticket.faceValue.toString(), tx: receipt?.hash }, "winning ticket redeemed");
      return true;
    } catch (err) {
      // a NonceManager counted the failed transaction's nonce: the retry must not skip one
      (this.o.broker.runner as { reset?: () => void } | null)?.reset?.();
      const name = decodeContractError(err)?.name;
      const reason = describeChainError(err);
      const final = (name !== undefined && FINAL_ERRORS.has(name)) || w.attempts + 1 >= this.maxAttempts;
      this.o.store.markFailed(w.hash, reason, final);
      const fields = { ticket: w.hash, sender: w.ticket.sender, faceValue: w.ticket.faceValue.toString(), attempt: w.attempts + 1, err: reason };
      if (final) this.o.logger.error(fields, "winning ticket could not be redeemed; given up");
      else this.o.logger.warn(fields, "winning ticket redemption failed; retrying at the next pass");
      return false;
    }
  }
}

/** TicketGateOptions.readSender from the contract: the client's deposit and this server's share of its reserve. */
export function senderReader(broker: TicketBroker, server: string): (sender: string) => Promise<ChainSender> {
  return async (sender) => {
    const [info, reserveShare] = await Promise.all([broker.senderInfo(sender), broker.reserveAvailable(sender, server)]);
    return { deposit: info.deposit, reserveShare, withdrawableAt: info.withdrawableAt };
  };
}
