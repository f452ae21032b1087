import { computeAddress, getAddress, type SigningKey, type TypedDataDomain } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { signBinding } from "../../protocol/payment.js";
import { ticketAccountId, ticketTerms } from "../../protocol/tickets.js";
import { MessageType, type BindTickets, type PayTicket, type TicketPaid, type TicketsBound } from "../../protocol/wire.js";
import type { TicketLedger } from "./ticketLedger.js";

export interface TicketPayerOptions {
  /** The wallet's key: the TicketBroker deposit's owner (the tickets' sender). */
  key: SigningKey;
  /** The tickets' EIP-712 domain, from the client's deployment file (never from a server). */
  domain: TypedDataDomain;
  ledger: TicketLedger;
  /** Face value to aim for, token base units (Livepeer: ≈ 100 × a redemption's gas cost in tokens). */
  targetFaceValueWei: bigint;
  /** Seconds a ticket stays redeemable (default 7200; servers want at least an hour). */
  lifetimeSeconds?: number;
  /** Unix seconds now (default: the wall clock). */
  nowSeconds?: () => number;
}

export const DEFAULT_TICKET_LIFETIME_SECONDS = 7_200;

/**
 * The client's side of ticket payment, per server and session: the binding message, then one ticket
 * per step whose expected value is exactly what the step owes (`ticketTerms`: face value owed·2^j
 * near the target, probability 2^-j), under the commitment the server gave last. Nonces come from
 * the wallet's ledger, so no two tickets of this wallet share one, whatever the process.
 */
export class TicketPayer {
  readonly sender: string;
  private readonly lifetime: number;
  private readonly now: () => number;
  /** Per `server|session`: the server's current commitment. */
  private readonly commitments = new Map<string, string>();

  constructor(private readonly o: TicketPayerOptions) {
    this.sender = computeAddress(o.key.publicKey);
    this.lifetime = o.lifetimeSeconds ?? DEFAULT_TICKET_LIFETIME_SECONDS;
    this.now = o.nowSeconds ?? ((): number => Math.floor(Date.now() / 1000));
    if (o.targetFaceValueWei <= 0n) throw new InvalidArgumentError(`ticket payer targetFaceValueWei must be > 0, got ${o.targetFaceValueWei}`);
    if (!Number.isSafeInteger(this.lifetime) || this.lifetime < 1) throw new InvalidArgumentError(`ticket payer lifetimeSeconds must be a positive integer, got ${this.lifetime}`);
  }

  /** BindTickets for `sessionId` on `server`, signed over the connection's `challenge`. */
  bindMessage(requestId: number, server: string, sessionId: string, challenge: string): BindTickets {
    const signature = signBinding(this.o.key, this.o.domain, { channelId: ticketAccountId(this.sender), sessionId, server: getAddress(server), challenge });
    return { type: MessageType.BindTickets, requestId, sessionId, sender: this.sender, signature };
  }

  /** The server's answer to BindTickets or PayTicket: the commitment the next ticket must name. */
  accepted(server: string, m: TicketsBound | TicketPaid): void {
    this.commitments.set(key(server, m.sessionId), m.recipientRandHash);
  }

  /** One ticket worth exactly `owedWei` in expectation, for `server` on `sessionId`. */
  payStep(requestId: number, server: string, sessionId: string, owedWei: bigint): PayTicket {
    const randHash = this.commitments.get(key(server, sessionId));
    if (randHash === undefined) throw new InvalidArgumentError(`no ticket commitment from ${server} for session ${sessionId}: bind the session first`);
    const { faceValue, winProb } = ticketTerms(owedWei, this.o.targetFaceValueWei);
    const expiration = BigInt(this.now() + this.lifetime);
    const { ticket, signature } = this.o.ledger.signNext(this.o.key, this.o.domain, (senderNonce) => ({
      recipient: getAddress(server),
      sender: this.sender,
      faceValue,
      winProb,
      senderNonce,
      recipientRandHash: randHash,
      expiration,
      auxData: sessionId,
    }));
    return { type: MessageType.PayTicket, requestId, sessionId, ticket, signature };
  }
}

const key = (server: string, sessionId: string): string => `${getAddress(server)}|${sessionId}`;
