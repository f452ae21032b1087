import type { Logger } from "pino";
import { InvalidArgumentError } from "../../protocol/errors.js";
import type { PaymentChannels } from "../../types/ethers-contracts/index.js";
import type { ChainChannel } from "../server/paymentGate.js";
import type { ChannelRecord, VoucherStore } from "../store/voucherStore.js";

export interface RedeemerOptions {
  /** PaymentChannels, connected to the server's staked key (the channels' server). */
  channels: PaymentChannels;
  store: VoucherStore;
  /** Redeem a channel once its unredeemed vouchers reach this many token base units (a closing channel: at once). Default 0: every voucher. */
  thresholdWei?: bigint;
  /** Milliseconds between looks for CloseStarted and due redemptions. Default 5000. */
  pollMs?: number;
  /** Called when a client starts closing a channel this server holds (the gate stops charging it). */
  onCloseStarted?: (channelId: string, closeReadyAt: number) => void;
  logger: Logger;
}

/**
 * Turns the vouchers a server holds into tokens: a channel is redeemed once what it owes the server
 * reaches a threshold (gas is paid per redemption), at once when its client starts a close (it
 * watches CloseStarted, so the close cannot finish first), and every channel on shutdown. What was
 * redeemed is recorded in the store, so after a restart it continues where it stopped; a failed
 * redemption is logged and tried again at the next poll, never dropped.
 */
export class Redeemer {
  private readonly thresholdWei: bigint;
  private readonly pollMs: number;
  private timer: NodeJS.Timeout | undefined;
  /** One pass at a time: two would send the same voucher twice. */
  private queue: Promise<unknown> = Promise.resolve();
  private nextBlock: number | undefined;

  constructor(private readonly o: RedeemerOptions) {
    this.thresholdWei = o.thresholdWei ?? 0n;
    this.pollMs = o.pollMs ?? 5_000;
    if (this.thresholdWei < 0n) throw new InvalidArgumentError(`redeemer thresholdWei must be >= 0, got ${this.thresholdWei}`);
    if (!Number.isSafeInteger(this.pollMs) || this.pollMs < 1) throw new InvalidArgumentError(`redeemer pollMs must be a positive integer, got ${this.pollMs}`);
  }

  /** Starts polling; the first pass runs at once (vouchers left by a previous run are redeemed if due). */
  start(): void {
    const tick = (): void => {
      void this.pass(false).finally(() => {
        if (this.timer !== undefined) this.timer = setTimeout(tick, this.pollMs).unref();
      });
    };
    this.timer = setTimeout(tick, 0).unref();
  }

  /** Stops polling without redeeming: what is held stays in the store for the next run. */
  pause(): Promise<unknown> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    return this.queue;
  }

  /** Stops polling and redeems everything held (after any pass under way). */
  async stop(): Promise<number> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    return this.pass(true);
  }

  /** One pass: note closes started since the last, then redeem what is due (`all`: everything). Returns redemptions sent. */
  pass(all: boolean): Promise<number> {
    const run = this.queue.then(async () => {
      await this.watchCloses();
      return this.redeemDue(all);
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async watchCloses(): Promise<void> {
    const provider = this.o.channels.runner?.provider;
    if (provider === undefined || provider === null) return;
    try {
      const latest = await provider.getBlockNumber();
      const from = this.nextBlock ?? Math.max(0, latest - 1_000); // first look: the recent past (a restart catches up on closes it missed)
      if (from > latest) return;
      const events = await this.o.channels.queryFilter(this.o.channels.filters.CloseStarted(), from, latest);
      this.nextBlock = latest + 1;
      for (const e of events) {
        const channelId = e.args.channelId;
        if (this.o.store.get(channelId) === undefined) continue;
        const readyAt = Number(e.args.closeReadyAt);
        this.o.store.markClosing(channelId, readyAt);
        this.o.onCloseStarted?.(channelId, readyAt);
        this.o.logger.info({ channelId, closeReadyAt: readyAt }, "client started closing a channel: redeeming it now");
      }
    } catch (err) {
      this.o.logger.error({ err: (err as Error).message }, "reading CloseStarted events failed; retrying at the next poll");
    }
  }

  private async redeemDue(all: boolean): Promise<number> {
    let sent = 0;
    for (const c of this.o.store.unredeemed()) {
      const due = all || c.closeReadyAt !== 0 || c.covered - c.redeemed >= this.thresholdWei;
      if (!due) continue;
      try {
        if (await this.redeem(c)) sent++;
      } catch (err) {
        // a NonceManager counted the failed transaction's nonce: the retry must not skip one
        (this.o.channels.runner as { reset?: () => void } | null)?.reset?.();
        this.o.logger.error({ channelId: c.channelId, amount: c.covered.toString(), err: (err as Error).message }, "redemption failed; retrying at the next poll");
      }
    }
    return sent;
  }

  /** Redeems `c`'s best voucher unless the chain already paid it (a redemption whose record was lost, or a closed channel). */
  private async redeem(c: ChannelRecord): Promise<boolean> {
    const onChain = await this.o.channels.channel(c.channelId);
    if (onChain.closed || onChain.paid >= c.covered) {
      this.o.store.markRedeemed(c.channelId, c.covered); // nothing more can be redeemed
      if (onChain.closed && onChain.paid < c.covered) {
        this.o.logger.error({ channelId: c.channelId, paid: onChain.paid.toString(), covered: c.covered.toString() }, "channel closed before its last voucher was redeemed");
      }
      return false;
    }
    const receipt = await (await this.o.channels.redeem(c.channelId, c.covered, c.signature)).wait();
    this.o.store.markRedeemed(c.channelId, c.covered);
    this.o.logger.info({ channelId: c.channelId, cumulative: c.covered.toString(), tx: receipt?.hash }, "voucher redeemed");
    return true;
  }
}

/** PaymentGateOptions.readChannel from the contract: undefined for a channel that does not exist (ChannelUnknown). */
export function channelReader(channels: PaymentChannels): (channelId: string) => Promise<ChainChannel | undefined> {
  const unknown = channels.interface.getError("ChannelUnknown")!.selector;
  return async (channelId) => {
    try {
      const c = await channels.channel(channelId);
      return { client: c.client, server: c.server, deposit: c.deposit, paid: c.paid, closeReadyAt: c.closeReadyAt, closed: c.closed };
    } catch (err) {
      if ((err as { data?: unknown }).data === undefined || !String((err as { data?: unknown }).data).startsWith(unknown)) throw err;
      return undefined;
    }
  };
}
