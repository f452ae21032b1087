import { ZeroHash, type TypedDataDomain } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { recoverBindingSigner, stepCost } from "../../protocol/payment.js";
import { recoverVoucherSigner } from "../../protocol/voucher.js";
import { ErrorCode, MessageType, WireError, type BindChannel, type ChannelBound, type Pay, type Paid, type PaymentDue } from "../../protocol/wire.js";
import type { ChannelRecord, VoucherStore } from "../store/voucherStore.js";

/** A channel as PaymentChannels.channel returns it (a TypeChain result is one). */
export interface ChainChannel {
  client: string;
  server: string;
  deposit: bigint;
  paid: bigint;
  closeReadyAt: bigint;
  closed: boolean;
}

export interface PaymentGateOptions {
  /** Token base units per token of a step (prefill and decode alike): the server's registered price. Must be > 0. */
  pricePerToken: bigint;
  /** Steps of each session that may run before a voucher covers them (default 1: a session's step needs its earlier ones paid). */
  creditSteps?: number;
  /** Sessions bound to channels at once (default 1024; the server's session limit is the tighter bound in practice). */
  maxBoundSessions?: number;
  /** The server's address: channels must be to it. */
  server: string;
  /** The vouchers' EIP-712 domain: this chain and its PaymentChannels contract. */
  voucherDomain: TypedDataDomain;
  /** The channel on chain; undefined when it does not exist. */
  readChannel: (channelId: string) => Promise<ChainChannel | undefined>;
  store: VoucherStore;
  /** Called after a voucher is stored (the redeemer may act on it). */
  onVoucher?: (channelId: string) => void;
}

export const DEFAULT_CREDIT_STEPS = 1;
export const DEFAULT_MAX_BOUND_SESSIONS = 1024;

/** A bound session: its channel, and its steps no voucher covers yet (oldest first). */
interface Binding {
  channelId: string;
  unpaid: UnpaidStep[];
}

interface UnpaidStep {
  cost: bigint;
  /** Order of charging, across sessions: a voucher naming no session covers the oldest first. */
  seq: number;
}

/**
 * A priced server's till: no work it is not paid for. A session runs steps only once its owner has
 * bound it to an open channel to this server (BindChannel, signed by the channel's client over the
 * connection's challenge); each step is charged exactly price × tokens to that channel, and a step
 * is admitted only while at most `creditSteps` earlier steps of its session are not covered by an
 * accepted voucher, nothing owed on the channel is left unanswered by a live session (owed before a
 * restart, or by a session that ended unpaid), and the deposit covers it. Sessions sharing a channel
 * (a gateway's concurrent requests) each have their own credit. Otherwise: a PaymentRequired error
 * naming the channel, what is owed and what is covered; the session stays open (until it pays, or
 * its idle timeout).
 *
 * A voucher is accepted when signed by the channel's client for this channel, chain and contract,
 * above the best one held (a replay or a stale one is refused) and within the deposit; it is stored
 * before it is acknowledged. It covers first the steps of the session it names, then debt no live
 * session answers for, then the oldest steps of the channel's other sessions. What is owed per
 * channel is stored too, so a restart forgets nothing; per-session state lives only as long as the
 * session (see `unbind`).
 */
export class PaymentGate {
  readonly pricePerToken: bigint;
  readonly creditSteps: number;
  readonly maxBoundSessions: number;
  private readonly bindings = new Map<string, Binding>();
  private charges = 0;

  constructor(private readonly o: PaymentGateOptions) {
    this.pricePerToken = o.pricePerToken;
    this.creditSteps = o.creditSteps ?? DEFAULT_CREDIT_STEPS;
    this.maxBoundSessions = o.maxBoundSessions ?? DEFAULT_MAX_BOUND_SESSIONS;
    if (o.pricePerToken <= 0n) throw new InvalidArgumentError(`payment gate pricePerToken must be > 0, got ${o.pricePerToken}`);
    if (!Number.isSafeInteger(this.creditSteps) || this.creditSteps < 1) {
      throw new InvalidArgumentError(`payment gate creditSteps must be a positive integer, got ${this.creditSteps}`);
    }
    if (!Number.isSafeInteger(this.maxBoundSessions) || this.maxBoundSessions < 1) {
      throw new InvalidArgumentError(`payment gate maxBoundSessions must be a positive integer, got ${this.maxBoundSessions}`);
    }
  }

  /** Sessions bound to a channel now. */
  get boundSessions(): number {
    return this.bindings.size;
  }

  /** Binds a session (the caller checked the connection owns it) to a channel; `challenge` is the connection's. */
  async bind(m: BindChannel, challenge: string): Promise<ChannelBound> {
    this.checkRoomFor(m.sessionId);
    const signer = recoverBindingSigner(this.o.voucherDomain, { channelId: m.channelId, sessionId: m.sessionId, server: this.o.server, challenge }, m.signature);
    const onChain = await this.o.readChannel(m.channelId);
    const due = (rec?: ChannelRecord): PaymentDue => ({ channelId: m.channelId, owed: rec?.owed ?? 0n, covered: rec?.covered ?? 0n });
    if (onChain === undefined) throw required(`channel ${m.channelId} does not exist on chain: open a channel to ${this.o.server}`, due());
    if (onChain.server !== this.o.server) throw required(`channel ${m.channelId} pays ${onChain.server}, not this server ${this.o.server}`, due());
    if (onChain.closed) throw required(`channel ${m.channelId} is closed: open a new one`, due());
    if (onChain.closeReadyAt !== 0n) throw required(`channel ${m.channelId} is closing (ready at ${onChain.closeReadyAt}): open a new one`, due());
    if (signer !== onChain.client) {
      throw new WireError(ErrorCode.Forbidden, `the binding of session ${m.sessionId} to channel ${m.channelId} is signed by ${signer}, the channel's client is ${onChain.client}`);
    }
    const rec = this.o.store.track(m.channelId, onChain.client, onChain.deposit, onChain.paid, 0);
    if (rec.deposit - rec.owed < this.pricePerToken) {
      throw required(`channel ${m.channelId}'s deposit ${rec.deposit} is used up (owed ${rec.owed}; a token costs ${this.pricePerToken}): top it up or open a new one`, due(rec));
    }
    this.checkRoomFor(m.sessionId); // again: other bindings may have landed during the chain read
    // a rebinding leaves the session's unpaid steps owed on its old channel, answered by no session
    this.bindings.set(m.sessionId, { channelId: m.channelId, unpaid: [] });
    return { type: MessageType.ChannelBound, requestId: m.requestId, sessionId: m.sessionId, channelId: m.channelId, deposit: rec.deposit, owed: rec.owed, covered: rec.covered };
  }

  /**
   * Checks and stores a voucher; a valid one that leaves more owed than the open sessions' unpaid steps
   * (it pays part of a step, or not what an ended session left) is kept, and answered PaymentRequired.
   */
  async pay(m: Pay, nowMs: number): Promise<Paid> {
    let rec = this.o.store.get(m.channelId);
    if (rec === undefined || !this.isBound(m.channelId)) {
      throw required(`channel ${m.channelId} is bound to no session on this server: send BindChannel first`, { channelId: m.channelId, owed: 0n, covered: 0n });
    }
    const due: PaymentDue = { channelId: m.channelId, owed: rec.owed, covered: rec.covered };
    if (m.cumulativeAmount <= rec.covered) {
      throw required(`voucher for ${m.cumulativeAmount} on channel ${m.channelId} does not exceed the ${rec.covered} already accepted: replayed or stale`, due);
    }
    const signer = recoverVoucherSigner(this.o.voucherDomain, { channelId: m.channelId, cumulativeAmount: m.cumulativeAmount }, m.signature);
    if (signer !== rec.client) {
      throw new WireError(
        ErrorCode.Forbidden,
        `voucher for ${m.cumulativeAmount} on channel ${m.channelId} recovers to ${signer}, not the channel's client ${rec.client} (signed by another key, or for another channel, chain or contract)`,
      );
    }
    if (m.cumulativeAmount > rec.deposit) {
      rec = await this.refresh(m.channelId); // it may have been topped up
      if (m.cumulativeAmount > rec.deposit) throw required(`voucher for ${m.cumulativeAmount} exceeds channel ${m.channelId}'s deposit ${rec.deposit}`, due);
    }
    const increase = m.cumulativeAmount - rec.covered;
    this.o.store.accept(m.channelId, m.cumulativeAmount, m.signature, nowMs);
    const now = this.o.store.get(m.channelId)!;
    const uncovered = now.owed - now.covered;
    this.cover(m.channelId, m.sessionId, increase, uncovered);
    this.o.onVoucher?.(m.channelId);
    // what stays uncovered must be exactly the open sessions' unpaid steps (others may be running): else it paid part of a step, or left debt
    const running = this.attributed(m.channelId);
    if (running !== uncovered) {
      throw required(
        `voucher for ${m.cumulativeAmount} on channel ${m.channelId} is kept but covers less than the ${now.owed} owed in whole steps (the open sessions' unpaid steps come to ${running})`,
        { channelId: m.channelId, owed: now.owed, covered: now.covered },
      );
    }
    return { type: MessageType.Paid, requestId: m.requestId, channelId: m.channelId, owed: now.owed, covered: now.covered };
  }

  /**
   * Charges a step of `tokens` tokens to the session's channel, or throws PaymentRequired; returns
   * the undo for a step that did not run (the client may retry it).
   */
  charge(sessionId: string, step: bigint, tokens: number): () => void {
    const cost = stepCost(this.pricePerToken, tokens);
    const binding = this.bindings.get(sessionId);
    if (binding === undefined) {
      throw required(`session ${sessionId} has no payment channel: bind one (BindChannel) first; this server charges ${this.pricePerToken} per token`, {
        channelId: ZeroHash,
        owed: cost,
        covered: 0n,
      });
    }
    const { channelId, unpaid } = binding;
    const rec = this.o.store.get(channelId)!;
    const due: PaymentDue = { channelId, owed: rec.owed, covered: rec.covered };
    if (rec.closeReadyAt !== 0) throw required(`channel ${channelId} is closing: open a new one`, due);
    const unanswered = rec.owed - rec.covered - this.attributed(channelId);
    if (unanswered > 0n) {
      throw required(`step ${step} of session ${sessionId} needs payment first: channel ${channelId} owes ${unanswered} for work of no open session (owed ${rec.owed}, its vouchers cover ${rec.covered})`, due);
    }
    if (unpaid.length >= this.creditSteps) {
      throw required(
        `step ${step} of session ${sessionId} needs payment first: channel ${channelId} owes ${rec.owed}, its vouchers cover ${rec.covered} (credit: ${this.creditSteps} unpaid step${this.creditSteps === 1 ? "" : "s"} per session)`,
        due,
      );
    }
    const after = rec.owed + cost;
    if (after > rec.deposit) {
      throw required(`step ${step} costs ${cost}: channel ${channelId}'s deposit ${rec.deposit} cannot cover ${after} owed; top it up`, due);
    }
    this.o.store.setOwed(channelId, after);
    const entry: UnpaidStep = { cost, seq: this.charges++ };
    unpaid.push(entry);
    return () => {
      const now = this.o.store.get(channelId)!;
      this.o.store.setOwed(channelId, now.owed - cost);
      const i = unpaid.indexOf(entry);
      if (i >= 0) unpaid.splice(i, 1);
    };
  }

  /** The client started closing `channelId`: no more steps are charged to it. */
  closing(channelId: string, closeReadyAt: number): void {
    if (this.o.store.get(channelId) !== undefined) this.o.store.markClosing(channelId, closeReadyAt);
  }

  /**
   * A session ended (closed, idle, or its connection gone): its binding goes. What it left unpaid
   * stays owed on the channel (the store's record stays), answered by no session: the channel's next
   * voucher must cover it before another step runs.
   */
  unbind(sessionId: string): void {
    this.bindings.delete(sessionId);
  }

  private checkRoomFor(sessionId: string): void {
    if (!this.bindings.has(sessionId) && this.bindings.size >= this.maxBoundSessions) {
      throw new WireError(ErrorCode.Busy, `${this.bindings.size} sessions are bound to payment channels on this server, its limit (maxBoundSessions): try again later`);
    }
  }

  private isBound(channelId: string): boolean {
    for (const b of this.bindings.values()) if (b.channelId === channelId) return true;
    return false;
  }

  /** What the live sessions on `channelId` owe for their unpaid steps. */
  private attributed(channelId: string): bigint {
    let sum = 0n;
    for (const b of this.bindings.values()) if (b.channelId === channelId) for (const u of b.unpaid) sum += u.cost;
    return sum;
  }

  /**
   * A voucher raised what is covered on `channelId` by `increase`, leaving `uncovered` owed: it pays
   * the named session's oldest steps it covers whole, then (what the live sessions still owe being
   * more than `uncovered`) the channel's oldest steps.
   */
  private cover(channelId: string, sessionId: string | undefined, increase: bigint, uncovered: bigint): void {
    const named = sessionId === undefined ? undefined : this.bindings.get(sessionId);
    if (named !== undefined && named.channelId === channelId) {
      let left = increase;
      while (named.unpaid.length > 0 && named.unpaid[0]!.cost <= left) left -= named.unpaid.shift()!.cost;
    }
    // what the live sessions owe beyond what is uncovered was paid: their oldest steps that fit it
    let excess = this.attributed(channelId) - uncovered;
    if (excess <= 0n) return;
    const steps: { binding: Binding; step: UnpaidStep }[] = [];
    for (const binding of this.bindings.values()) if (binding.channelId === channelId) for (const step of binding.unpaid) steps.push({ binding, step });
    steps.sort((x, y) => x.step.seq - y.step.seq);
    for (const { binding, step } of steps) {
      if (step.cost > excess) continue;
      binding.unpaid.splice(binding.unpaid.indexOf(step), 1);
      excess -= step.cost;
    }
  }

  private async refresh(channelId: string): Promise<ChannelRecord> {
    const onChain = await this.o.readChannel(channelId);
    if (onChain === undefined) throw new WireError(ErrorCode.Internal, `channel ${channelId} vanished from the chain`);
    return this.o.store.track(channelId, onChain.client, onChain.deposit, onChain.paid, Number(onChain.closeReadyAt));
  }
}

function required(message: string, due: PaymentDue): WireError {
  return new WireError(ErrorCode.PaymentRequired, message, 0, due);
}
