import { randomBytes } from "node:crypto";
import { ZeroHash, getAddress, toBigInt, type TypedDataDomain } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { recoverBindingSigner, stepCost } from "../../protocol/payment.js";
import {
  TWO_POW_256,
  expectedValueScaled,
  isWinningTicket,
  recipientRandHash,
  recoverTicketHashSigner,
  ticketAccountId,
  ticketHash,
} from "../../protocol/tickets.js";
import { ErrorCode, MessageType, WireError, type BindTickets, type PayTicket, type PaymentDue, type TicketPaid, type TicketsBound } from "../../protocol/wire.js";
import type { WinningTicket } from "../store/ticketStore.js";

/** What the TicketBroker holds for a client, as this server may draw on it. */
export interface ChainSender {
  deposit: bigint;
  /** This server's share of the client's reserve (`reserveAvailable(sender, server)`). */
  reserveShare: bigint;
  /** When the client may withdraw (unix seconds); 0 while it is not unlocking. */
  withdrawableAt: bigint;
}

export interface TicketGateOptions {
  /** Token base units per token of a step (prefill and decode alike): the server's registered price. Must be > 0. */
  pricePerToken: bigint;
  /** Steps of a session that may run before tickets cover them (default 1, as PaymentGate). */
  creditSteps?: number;
  /** The server's address: tickets must pay it. */
  server: string;
  /** The tickets' EIP-712 domain: this chain and its TicketBroker contract. */
  ticketDomain: TypedDataDomain;
  /** The client's funds in the broker. */
  readSender: (sender: string) => Promise<ChainSender>;
  /**
   * How long a client's funds as last read are trusted for its tickets (ms, default 5,000); a binding
   * always reads them afresh. Reading them for every ticket was two chain calls per step (~12 ms per
   * priced server and step against a local node). Within this window a ticket may be accepted against
   * a deposit other servers' redemptions have just drawn down, or just after the client began to unlock
   * (redemption stays open for the whole unlock period, so such a ticket still pays).
   */
  senderInfoMaxAgeMs?: number;
  /** A ticket must stay redeemable this many seconds after it is accepted (default 3600). */
  minLifetimeSeconds?: number;
  /** Tickets accepted under one commitment before the server picks a new random number (default 65,536). */
  maxTicketsPerRand?: number;
  /** Called (and awaited) with each winning ticket before it is acknowledged: store it, redeem it. */
  onWinner: (hash: string, w: WinningTicket) => void | Promise<void>;
  /** The server's secret random numbers (default: 32 random bytes); tests pass a seeded one. */
  randomRand?: () => bigint;
  /** Unix seconds now (default: the wall clock). */
  nowSeconds?: () => number;
  /** Monotonic ms, for the age of funds read (default performance.now); tests pass their own. */
  clockMs?: () => number;
}

export const DEFAULT_TICKET_CREDIT_STEPS = 1;
export const DEFAULT_MIN_TICKET_LIFETIME_SECONDS = 3_600;
export const DEFAULT_MAX_TICKETS_PER_RAND = 65_536;
export const DEFAULT_SENDER_INFO_MAX_AGE_MS = 5_000;
/** Clients whose funds are remembered at most (the oldest reads are forgotten first). */
const MAX_SENDERS_REMEMBERED = 4_096;

interface SessionTickets {
  sender: string;
  rand: bigint;
  randHash: string;
  /** Nonces accepted under randHash: a repeated one is a replay. */
  nonces: Set<bigint>;
  owed: bigint;
  /** Expected value of the accepted tickets, times 2^256 (exact). */
  coveredScaled: bigint;
  /** What was owed after each recent step not yet covered. */
  unpaid: bigint[];
}

/**
 * A priced server's till for probabilistic tickets, with PaymentGate's contract (bind, pay, charge,
 * unbind): a session runs steps only once its owner has bound it to its TicketBroker deposit
 * (BindTickets, signed by the client over the connection's challenge); each step is charged exactly
 * price × tokens, and admitted only while at most `creditSteps` earlier steps are not covered by the
 * expected value of accepted tickets. Otherwise: PaymentRequired naming the account, what is owed
 * and what is covered; the session stays open.
 *
 * Per session the server keeps a secret random number and hands out only its hash. A ticket is
 * accepted when it pays this server, from the bound client, under the current hash, with a nonce not
 * seen under that hash, valid for `minLifetimeSeconds` more, signed by the client for this chain and
 * broker, with an expected value that brings what the tickets cover up to what is owed (a ticket
 * worth less is refused and not counted, so the client keeps the commitment it knows), with a face
 * value the client's deposit (or this server's reserve share) can pay, and the client not unlocking. A winner is handed to `onWinner` before the ticket is acknowledged, and the
 * server then picks a new random number (the old one becomes public when redeemed).
 */
export class TicketGate {
  readonly pricePerToken: bigint;
  readonly creditSteps: number;
  private readonly minLifetime: number;
  private readonly maxPerRand: number;
  private readonly random: () => bigint;
  private readonly now: () => number;
  private readonly sessions = new Map<string, SessionTickets>();
  private readonly maxFundsAge: number;
  private readonly clock: () => number;
  /** Per client: its funds as last read (or being read), and when the read began. */
  private readonly funds = new Map<string, { at: number; read: Promise<ChainSender> }>();

  constructor(private readonly o: TicketGateOptions) {
    this.pricePerToken = o.pricePerToken;
    this.creditSteps = o.creditSteps ?? DEFAULT_TICKET_CREDIT_STEPS;
    this.minLifetime = o.minLifetimeSeconds ?? DEFAULT_MIN_TICKET_LIFETIME_SECONDS;
    this.maxPerRand = o.maxTicketsPerRand ?? DEFAULT_MAX_TICKETS_PER_RAND;
    this.random = o.randomRand ?? ((): bigint => toBigInt(randomBytes(32)));
    this.now = o.nowSeconds ?? ((): number => Math.floor(Date.now() / 1000));
    this.maxFundsAge = o.senderInfoMaxAgeMs ?? DEFAULT_SENDER_INFO_MAX_AGE_MS;
    this.clock = o.clockMs ?? ((): number => performance.now());
    if (!Number.isSafeInteger(this.maxFundsAge) || this.maxFundsAge < 0) {
      throw new InvalidArgumentError(`ticket gate senderInfoMaxAgeMs must be an integer ≥ 0, got ${this.maxFundsAge}`);
    }
    if (o.pricePerToken <= 0n) throw new InvalidArgumentError(`ticket gate pricePerToken must be > 0, got ${o.pricePerToken}`);
    for (const [name, v] of [["creditSteps", this.creditSteps], ["minLifetimeSeconds", this.minLifetime], ["maxTicketsPerRand", this.maxPerRand]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`ticket gate ${name} must be a positive integer, got ${v}`);
    }
  }

  /** Binds a session (the caller checked the connection owns it) to `m.sender`'s deposit; `challenge` is the connection's. */
  async bind(m: BindTickets, challenge: string): Promise<TicketsBound> {
    const sender = getAddress(m.sender);
    const account = ticketAccountId(sender);
    const signer = recoverBindingSigner(this.o.ticketDomain, { channelId: account, sessionId: m.sessionId, server: this.o.server, challenge }, m.signature);
    if (signer !== sender) {
      throw new WireError(ErrorCode.Forbidden, `the binding of session ${m.sessionId} to ${sender}'s ticket deposit is signed by ${signer}`);
    }
    const funds = await this.senderFunds(sender, true);
    const due: PaymentDue = { channelId: account, owed: 0n, covered: 0n };
    if (funds.withdrawableAt !== 0n) throw required(`${sender} is unlocking its ticket deposit (withdrawable at ${funds.withdrawableAt}): cancel the unlock or fund again`, due);
    if (funds.deposit + funds.reserveShare < this.pricePerToken) {
      throw required(`${sender} has ${funds.deposit} deposited in the ticket broker (reserve share ${funds.reserveShare}); a token costs ${this.pricePerToken}: fund it`, due);
    }
    const s: SessionTickets = { sender, rand: 0n, randHash: ZeroHash, nonces: new Set(), owed: 0n, coveredScaled: 0n, unpaid: [] };
    this.rotate(s);
    this.sessions.set(m.sessionId, s);
    return { type: MessageType.TicketsBound, requestId: m.requestId, sessionId: m.sessionId, recipientRandHash: s.randHash, owed: 0n, covered: 0n };
  }

  /** Checks one ticket and counts its expected value; a winner goes to `onWinner` first. */
  async pay(m: PayTicket): Promise<TicketPaid> {
    const s = this.sessions.get(m.sessionId);
    if (s === undefined) {
      throw required(`session ${m.sessionId} is bound to no ticket deposit on this server: send BindTickets first`, { channelId: ZeroHash, owed: 0n, covered: 0n });
    }
    const t = m.ticket;
    const due = this.due(s);
    const what = `ticket ${t.senderNonce} of session ${m.sessionId}`;
    if (getAddress(t.recipient) !== this.o.server) throw new WireError(ErrorCode.Forbidden, `${what} pays ${t.recipient}, not this server ${this.o.server}`);
    if (getAddress(t.sender) !== s.sender) throw new WireError(ErrorCode.Forbidden, `${what} is drawn on ${t.sender}, but the session is bound to ${s.sender}`);
    if (t.recipientRandHash !== s.randHash) throw required(`${what} names commitment ${t.recipientRandHash}; the current one is ${s.randHash}`, due);
    if (s.nonces.has(t.senderNonce)) throw required(`${what} was already accepted: a replay`, due);
    const latestOk = BigInt(this.now() + this.minLifetime);
    if (t.expiration < latestOk) throw required(`${what} expires at ${t.expiration}; it must stay valid until at least ${latestOk}`, due);
    if (t.faceValue <= 0n || t.winProb <= 0n) throw required(`${what} has face value ${t.faceValue} and win probability ${t.winProb}: it can never pay`, due);
    const hash = ticketHash(this.o.ticketDomain, t);
    const signer = recoverTicketHashSigner(hash, m.signature);
    if (signer !== s.sender) {
      throw new WireError(ErrorCode.Forbidden, `${what} recovers to ${signer}, not the client ${s.sender} (signed by another key, or for another chain or contract)`);
    }
    const value = expectedValueScaled(t.faceValue, t.winProb);
    if (s.coveredScaled + value < s.owed << 256n) {
      const short = ((s.owed << 256n) - s.coveredScaled - value + TWO_POW_256 - 1n) / TWO_POW_256;
      throw required(`${what} is refused: its expected value ${value / TWO_POW_256} leaves ${short} of the ${due.owed} owed uncovered (covered so far: ${due.covered})`, due);
    }
    const funds = await this.senderFunds(s.sender, false);
    if (funds.withdrawableAt !== 0n) throw required(`${s.sender} is unlocking its ticket deposit: no more tickets are accepted`, due);
    if (t.faceValue > funds.deposit + funds.reserveShare) {
      throw required(`${what} has face value ${t.faceValue}; ${s.sender}'s deposit ${funds.deposit} and reserve share ${funds.reserveShare} cannot pay it`, due);
    }

    s.nonces.add(t.senderNonce);
    s.coveredScaled += value;
    if (isWinningTicket(hash, s.rand, t.winProb)) {
      await this.o.onWinner(hash, { ticket: t, signature: m.signature, recipientRand: s.rand });
      this.rotate(s);
    } else if (s.nonces.size >= this.maxPerRand) {
      this.rotate(s);
    }
    s.unpaid = s.unpaid.filter((owedAfter) => owedAfter << 256n > s.coveredScaled);
    const now = this.due(s);
    return { type: MessageType.TicketPaid, requestId: m.requestId, sessionId: m.sessionId, recipientRandHash: s.randHash, owed: now.owed, covered: now.covered };
  }

  /**
   * Charges a step of `tokens` tokens to the session, or throws PaymentRequired; returns the undo
   * for a step that did not run.
   */
  charge(sessionId: string, step: bigint, tokens: number): () => void {
    const cost = stepCost(this.pricePerToken, tokens);
    const s = this.sessions.get(sessionId);
    if (s === undefined) {
      throw required(`session ${sessionId} has no ticket deposit: bind one (BindTickets) first; this server charges ${this.pricePerToken} per token`, { channelId: ZeroHash, owed: cost, covered: 0n });
    }
    if (s.unpaid.length >= this.creditSteps) {
      const due = this.due(s);
      throw required(
        `step ${step} of session ${sessionId} needs payment first: ${due.owed} owed, tickets cover ${due.covered} (credit: ${this.creditSteps} unpaid step${this.creditSteps === 1 ? "" : "s"})`,
        due,
      );
    }
    const after = s.owed + cost;
    s.owed = after;
    if (after << 256n > s.coveredScaled) s.unpaid.push(after);
    return () => {
      s.owed -= cost;
      const i = s.unpaid.lastIndexOf(after);
      if (i >= 0) s.unpaid.splice(i, 1);
    };
  }

  /** The commitment tickets of `sessionId` must name now; undefined for an unbound session. */
  commitment(sessionId: string): string | undefined {
    return this.sessions.get(sessionId)?.randHash;
  }

  /** A session ended: its ticket state goes. */
  unbind(sessionId: string): void {
    this.sessions.delete(sessionId);
  }

  /**
   * `sender`'s funds: as read within senderInfoMaxAgeMs (one read shared by concurrent callers), else
   * read now; `fresh` always reads. A failed read is not remembered.
   */
  private senderFunds(sender: string, fresh: boolean): Promise<ChainSender> {
    const now = this.clock();
    const known = this.funds.get(sender);
    if (!fresh && known !== undefined && now - known.at <= this.maxFundsAge) return known.read;
    const read = this.o.readSender(sender);
    this.funds.delete(sender); // re-inserted last: the map stays in order of reads
    this.funds.set(sender, { at: now, read });
    read.catch(() => {
      if (this.funds.get(sender)?.read === read) this.funds.delete(sender);
    });
    if (this.funds.size > MAX_SENDERS_REMEMBERED) this.funds.delete(this.funds.keys().next().value!);
    return read;
  }

  private rotate(s: SessionTickets): void {
    s.rand = this.random();
    s.randHash = recipientRandHash(s.rand);
    s.nonces = new Set();
  }

  private due(s: SessionTickets): PaymentDue {
    return { channelId: ticketAccountId(s.sender), owed: s.owed, covered: s.coveredScaled / TWO_POW_256 };
  }
}

function required(message: string, due: PaymentDue): WireError {
  return new WireError(ErrorCode.PaymentRequired, message, 0, due);
}
