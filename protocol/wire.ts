import { hexlify } from "ethers";
import { ACTIVATION_ENCODINGS, payloadBytes, type ActivationEncoding, type EncodedActivations } from "./activations.js";
import { EFedError } from "./errors.js";
import { checksumAddress } from "./keccak.js";
import type { Receipt } from "./receipt.js";
import type { Ticket } from "./tickets.js";

/**
 * The binary protocol between clients and shard servers, one WebSocket binary message per frame.
 * Every frame starts with a u8 message type and a u32 request id (0 for unsolicited frames), all
 * integers little-endian. Strings are u16 length + UTF-8; ids are raw 32 bytes; amounts u256 as 32
 * bytes big-endian (as the EVM writes them). Parsing checks every length against the bytes present
 * and against the limits given, so a bad frame becomes a `WireError` with a stable code.
 *
 * Version 2 added forwarding (see protocol/forwarding.ts): SessionOpened carries the session's
 * forwarding key, a Step may carry a forwarding tag and each hop of its route a tag, StepReceipt
 * carries the hashes it signs, Error names the hop that failed, and StepForwarded acknowledges a
 * forwarded step; FetchStep / StoredStep let anyone holding a receipt's leaf fetch the activations
 * behind it (what verifiers audit).
 *
 * Version 3 made the server a hostile-network endpoint: ServerInfo carries a fresh per-connection
 * `challenge`; FetchStep is answered only to the session's owner (an HMAC of the challenge and leaf
 * under the session's key, protocol/fetchAuth.ts) or to a connection that authenticated as a
 * registered verifier (Authenticate / Authenticated); new error codes Busy, StoreFailed, RateLimited
 * and TooManyConnections.
 *
 * Server-to-server links authenticate (protocol/forwarding.ts): a connecting server signs the
 * accepting server's challenge in PeerHello, the accepting one answers PeerWelcome, both agree a
 * link key, and every later frame the connecting server sends on that link carries a 32-byte MAC
 * trailer (stripped before parsing: protocol/peerAuth.ts `openSealedFrame`); error codes
 * PeerUnauthenticated and BadLinkMac.
 *
 * Payments (protocol/payment.ts), added within version 3 (a server that charges nothing never sees
 * them): BindChannel ties a session to a payment channel, signed by the channel's client over the
 * connection's challenge (answered ChannelBound); Pay carries a cumulative EIP-712 voucher
 * (answered Paid). A server refuses unpaid work with error code PaymentRequired, whose Error frame
 * carries what is owed: the channel, the amount owed and the amount the vouchers cover.
 *
 * Tickets (protocol/tickets.ts), also within version 3: BindTickets ties a session to a client's
 * TicketBroker deposit, signed like BindChannel under the ticket domain with the account id
 * `ticketAccountId(sender)` in place of the channel (answered TicketsBound, which carries the
 * server's commitment to its secret random number); PayTicket carries one signed ticket (answered
 * TicketPaid, with the commitment the next ticket must use). PaymentDue then names the account id.
 *
 * Version 4 added the server's credit to ServerInfo (`creditSteps`): a client pays a priced server
 * once every that many steps, not after every step.
 *
 * Version 5 signs receipts a run at a time (protocol/receiptChain.ts): a StepReceipt carries the
 * step's receipt unsigned, and every `signEvery`-th one (announced in ServerInfo) carries the
 * server's signature over the hash chain of the session's receipts so far; SessionClosed carries the
 * signature over the whole chain when its last steps were not signed yet. StoredStep and
 * BatchReceipts carry receipts without signatures: on chain, a receipt is evidence once it is under
 * a batch root its server posted.
 */
export const PROTOCOL_VERSION = 5;

/** A server signs its receipt chains at least this often (in steps): a client holds this many unsigned receipts per server at most. */
export const MAX_SIGN_EVERY = 256;

export const MessageType = {
  ServerInfo: 1,
  OpenSession: 2,
  SessionOpened: 3,
  Step: 4,
  StepResult: 5,
  CloseSession: 6,
  SessionClosed: 7,
  Error: 8,
  StepReceipt: 9,
  StepForwarded: 10,
  FetchStep: 11,
  StoredStep: 12,
  PeerHello: 13,
  PeerWelcome: 14,
  /** A verifier proves its address: a signature over the connection's challenge (protocol/fetchAuth.ts). */
  Authenticate: 15,
  Authenticated: 16,
  /** Like FetchStep, by session and step index: how a verifier collects the prefix of a session it audits. */
  FetchSessionStep: 17,
  /** A page of the receipts a server committed in one batch: what a verifier samples from. */
  FetchBatch: 18,
  BatchReceipts: 19,
  /** The client names the payment channel that pays for a session (protocol/payment.ts). */
  BindChannel: 20,
  ChannelBound: 21,
  /** A cumulative voucher on a bound channel. */
  Pay: 22,
  Paid: 23,
  /** The client names the TicketBroker deposit that pays for a session (protocol/tickets.ts). */
  BindTickets: 24,
  TicketsBound: 25,
  /** One signed probabilistic ticket for a bound session. */
  PayTicket: 26,
  TicketPaid: 27,
} as const;
export type MessageTypeCode = (typeof MessageType)[keyof typeof MessageType];

/** Stable error codes carried by Error frames. */
export const ErrorCode = {
  BadFrame: 1,
  UnknownType: 2,
  UnsupportedVersion: 3,
  TooLarge: 4,
  UnknownSession: 5,
  SessionExists: 6,
  TooManySessions: 7,
  SessionTooLong: 8,
  BadPosition: 9,
  BadShape: 10,
  BadEncoding: 11,
  Overloaded: 12,
  Internal: 13,
  ShuttingDown: 14,
  MemoryBudget: 15,
  BadRoute: 16,
  /** The next server of a forwarded step could not be reached, or did not answer in time. */
  Upstream: 17,
  /** A forwarded step's tag was not made with the named session's forwarding key. */
  Forbidden: 18,
  /** A fetched receipt is not in the server's store (never signed here, or past retention). */
  NotFound: 19,
  /** A forwarded step came on a connection that has not authenticated as a server (PeerHello), or a PeerHello failed. */
  PeerUnauthenticated: 20,
  /** A frame on an authenticated server link failed its MAC: altered or replayed on the way. */
  BadLinkMac: 21,
  /** The session already has a step in flight: a session runs one step at a time. */
  Busy: 22,
  /** The server cannot record receipts, so it takes no steps (the message says why). */
  StoreFailed: 23,
  /** Too many requests of this kind from this connection; retry later. */
  RateLimited: 24,
  /** The server holds its maximum of connections (in all, or from this address). */
  TooManyConnections: 25,
  /** The server does no more work until it is paid: the Error frame names the channel, what is owed and what is covered. */
  PaymentRequired: 26,
} as const;
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

export class WireError extends EFedError {
  readonly wireCode: ErrorCodeValue;
  /** Servers down the route from the one that reports it: 0 = that server itself. */
  readonly hop: number;
  /** With code PaymentRequired: what the server is owed. */
  readonly payment: PaymentDue | undefined;
  constructor(wireCode: ErrorCodeValue, message: string, hop = 0, payment?: PaymentDue) {
    super(`WIRE_${wireCode}`, message, hop === 0 && payment === undefined ? {} : { details: { hop, ...(payment === undefined ? {} : { payment }) } });
    this.wireCode = wireCode;
    this.hop = hop;
    this.payment = payment;
  }
}

/** What a PaymentRequired error says is owed: on `channelId` (zero: no channel bound yet), `owed` in all, `covered` by vouchers. */
export interface PaymentDue {
  channelId: string;
  owed: bigint;
  covered: bigint;
}

/** What a server promises on connect: who it is, what it serves, and its limits. */
export interface ServerInfo {
  type: typeof MessageType.ServerInfo;
  requestId: 0;
  protocolVersion: number;
  chainId: bigint;
  server: string; // checksummed address that signs receipts
  variantId: string; // 32-byte hex
  firstLayer: number;
  lastLayer: number;
  hiddenSize: number;
  maxSessions: number;
  maxSessionTokens: number;
  maxStepTokens: number;
  maxFrameBytes: number;
  pricePerToken: bigint;
  commitments: string; // address of the Commitments contract (receipt EIP-712 domain); zero when standalone
  /** 32 random bytes (0x-hex), fresh for each connection: what a peer signs or MACs to prove who it is on this connection. */
  challenge: string;
  /**
   * A priced server's credit: how many steps of a session it runs before payment covers them (the
   * client pays at most this often, for all of them at once); 0 for a server that charges nothing.
   */
  creditSteps: number;
  /**
   * The server signs a session's receipt chain after every step whose index + 1 is a multiple of
   * this (and at close): 1..MAX_SIGN_EVERY.
   */
  signEvery: number;
}

/**
 * A connecting server proves its receipt-signing address: it signs the accepting server's
 * challenge with its ephemeral X25519 key (protocol/peerAuth.ts helloTranscript).
 */
export interface PeerHello {
  type: typeof MessageType.PeerHello;
  requestId: number;
  server: string;
  ephemeralKey: string; // 32-byte X25519 public key
  signature: string; // 65 bytes
}

/** The accepting server's half of the link key, signed by its receipt-signing address. */
export interface PeerWelcome {
  type: typeof MessageType.PeerWelcome;
  requestId: number;
  ephemeralKey: string;
  signature: string;
}

export interface OpenSession {
  type: typeof MessageType.OpenSession;
  requestId: number;
  sessionId: string;
  maxLength: number;
}

export interface SessionOpened {
  type: typeof MessageType.SessionOpened;
  requestId: number;
  sessionId: string;
  /** 32-byte secret the server issues to the session's owner: only it can make forwarding tags. */
  forwardKey: string;
}

/** A server further down the route: the forwarding server sends its output there instead of back. */
export interface Hop {
  /** ws://HOST:PORT of that server. */
  url: string;
  /** The session the client opened there. */
  sessionId: string;
  /** The client's forwarding tag for that server's part of this step (protocol/forwarding.ts). */
  tag: string;
}

export interface Step {
  type: typeof MessageType.Step;
  requestId: number;
  sessionId: string;
  step: bigint;
  /** Position of the first of the `rows` tokens: must equal the session's length so far. */
  position: number;
  /** Encoding the output should be returned (or forwarded) in. */
  outputEncoding: ActivationEncoding;
  input: EncodedActivations;
  /** Remaining servers of the route, in order; empty: the output goes to the session's owner. */
  route: Hop[];
  /**
   * Present on a step forwarded by another server: the tag that proves the session's owner asked for
   * it. Absent: the step comes from the owner itself, on the connection that opened the session.
   */
  tag?: string;
}

/**
 * A forwarded step and all the hops after it are done: the last server sent its output to the
 * client. Each server answers the step it was given with this (or an Error) once its own next hop has.
 */
export interface StepForwarded {
  type: typeof MessageType.StepForwarded;
  requestId: number;
  sessionId: string;
  step: bigint;
}

/**
 * One server's receipt for a step: the fields the client does not know itself (the activation hashes
 * the server computed) and, every `signEvery` steps, its signature over the session's receipt chain
 * through this step (protocol/receiptChain.ts).
 */
export interface ServerReceipt {
  server: string;
  firstLayer: number;
  lastLayer: number;
  /** What the server hashed: a forwarding client never sees the inner hops' activations, only these. */
  inputHash: string;
  outputHash: string;
  /** 65-byte hex EIP-712 ReceiptChain signature over the chain through this step, when this step closes a signed run. */
  chainSignature?: string;
}

/** A step's output. Its receipt follows in a StepReceipt. */
export interface StepResult {
  type: typeof MessageType.StepResult;
  requestId: number;
  sessionId: string;
  step: bigint;
  output: EncodedActivations;
}

/**
 * A server's receipt for a step, sent right after the StepResult: the output leaves as soon as it is
 * computed, and hashing (and signing, at the end of a run) happen while the client moves on.
 */
export interface StepReceipt {
  type: typeof MessageType.StepReceipt;
  requestId: number;
  sessionId: string;
  step: bigint;
  signed: ServerReceipt;
}

/**
 * Asks for the step behind a receipt, by the receipt's Merkle leaf (protocol/receipt.ts receiptLeaf).
 * Answered to the session's owner, who proves it with `ownerProof` (protocol/fetchAuth.ts), or on a
 * connection that authenticated as a registered verifier (no proof needed).
 */
export interface FetchStep {
  type: typeof MessageType.FetchStep;
  requestId: number;
  leaf: string;
  /** HMAC-SHA256 under the session's key of the connection's challenge and the leaf (32-byte hex). */
  ownerProof?: string;
}

/**
 * The step `step` of session `sessionId` at this server (answered with StoredStep), to the same
 * parties as FetchStep; the owner's proof is made over `sessionStepTarget(sessionId, step)`.
 */
export interface FetchSessionStep {
  type: typeof MessageType.FetchSessionStep;
  requestId: number;
  sessionId: string;
  step: bigint;
  ownerProof?: string;
}

/** Receipts of a posted batch, in tree order, from `offset`: answered to an authenticated verifier only. */
export interface FetchBatch {
  type: typeof MessageType.FetchBatch;
  requestId: number;
  batchId: bigint;
  offset: number;
  /** At most MAX_BATCH_PAGE. */
  limit: number;
}

/** Receipts this server signed are at most this many per BatchReceipts page. */
export const MAX_BATCH_PAGE = 256;

export interface BatchReceipts {
  type: typeof MessageType.BatchReceipts;
  requestId: number;
  batchId: bigint;
  /** Receipts in the batch in all. */
  total: number;
  offset: number;
  receipts: Receipt[];
}

/** A verifier proves on this connection that it holds `address`'s key (protocol/fetchAuth.ts). */
export interface Authenticate {
  type: typeof MessageType.Authenticate;
  requestId: number;
  address: string;
  /** 65-byte signature over the connection's challenge, the server's address and the chain id. */
  signature: string;
}

export interface Authenticated {
  type: typeof MessageType.Authenticated;
  requestId: number;
  address: string;
}

/**
 * A stored step: the receipt, the activations it hashes, and — once the receipt is in a batch posted
 * on chain — the batch id and the leaf's Merkle proof (with which the receipt is evidence on chain).
 */
export interface StoredStep {
  type: typeof MessageType.StoredStep;
  requestId: number;
  receipt: Receipt;
  input: EncodedActivations;
  output: EncodedActivations;
  batch?: { batchId: bigint; proof: string[] };
}

/** Merkle proofs longer than this are refused (2^64 leaves). */
export const MAX_PROOF_LENGTH = 64;

export interface CloseSession {
  type: typeof MessageType.CloseSession;
  requestId: number;
  sessionId: string;
}

export interface SessionClosed {
  type: typeof MessageType.SessionClosed;
  requestId: number;
  sessionId: string;
  /**
   * The server's signature over the session's receipt chain through its last step, present when
   * steps ran since the last signed one (protocol/receiptChain.ts).
   */
  chain?: { lastStep: bigint; signature: string };
}

export interface ErrorMessage {
  type: typeof MessageType.Error;
  requestId: number;
  code: ErrorCodeValue;
  /** Where along the request's route it failed: 0 the server answering, 1 its next hop, and so on. */
  hop: number;
  message: string;
  /** Present with code PaymentRequired (encoded after the message: flag byte, channel, owed, covered). */
  payment?: PaymentDue;
}

/**
 * The client ties session `sessionId` to payment channel `channelId`: the channel's client signs
 * (protocol/payment.ts bindingDigest) the channel, the session, the server and the connection's
 * challenge, so nobody can charge a session to another's channel.
 */
export interface BindChannel {
  type: typeof MessageType.BindChannel;
  requestId: number;
  sessionId: string;
  channelId: string;
  signature: string;
}

/** The channel as the server sees it: its deposit, what the server is owed on it and what vouchers cover. */
export interface ChannelBound {
  type: typeof MessageType.ChannelBound;
  requestId: number;
  sessionId: string;
  channelId: string;
  deposit: bigint;
  owed: bigint;
  covered: bigint;
}

/**
 * A cumulative voucher (protocol/voucher.ts): the client owes `cumulativeAmount` in all on `channelId`.
 * `sessionId` (optional, encoded after the signature) names the session whose step it pays, so that a
 * server giving credit per session knows whose step is covered when several share the channel.
 */
export interface Pay {
  type: typeof MessageType.Pay;
  requestId: number;
  channelId: string;
  cumulativeAmount: bigint;
  signature: string;
  sessionId?: string;
}

/** The voucher is stored: it covers `covered`; the server is owed `owed` on the channel. */
export interface Paid {
  type: typeof MessageType.Paid;
  requestId: number;
  channelId: string;
  owed: bigint;
  covered: bigint;
}

/**
 * The client ties session `sessionId` to its TicketBroker deposit: `sender` signs (protocol/payment.ts
 * bindingDigest under the ticket domain, channelId = ticketAccountId(sender)) the session, the server
 * and the connection's challenge.
 */
export interface BindTickets {
  type: typeof MessageType.BindTickets;
  requestId: number;
  sessionId: string;
  sender: string;
  signature: string;
}

/**
 * Tickets for the session must name this server's commitment `recipientRandHash`; `owed` is what the
 * server is owed on the session, `covered` the expected value of the tickets it accepted (base units).
 */
export interface TicketsBound {
  type: typeof MessageType.TicketsBound;
  requestId: number;
  sessionId: string;
  recipientRandHash: string;
  owed: bigint;
  covered: bigint;
}

/** One signed ticket (protocol/tickets.ts) for session `sessionId`. */
export interface PayTicket {
  type: typeof MessageType.PayTicket;
  requestId: number;
  sessionId: string;
  ticket: Ticket;
  signature: string;
}

/** The ticket is accepted; the next one must name `recipientRandHash` (new after a winner). */
export interface TicketPaid {
  type: typeof MessageType.TicketPaid;
  requestId: number;
  sessionId: string;
  recipientRandHash: string;
  owed: bigint;
  covered: bigint;
}

export type Message =
  | ServerInfo
  | OpenSession
  | SessionOpened
  | Step
  | StepResult
  | StepReceipt
  | StepForwarded
  | FetchStep
  | FetchSessionStep
  | FetchBatch
  | BatchReceipts
  | StoredStep
  | Authenticate
  | Authenticated
  | CloseSession
  | SessionClosed
  | ErrorMessage
  | PeerHello
  | PeerWelcome
  | BindChannel
  | ChannelBound
  | Pay
  | Paid
  | BindTickets
  | TicketsBound
  | PayTicket
  | TicketPaid;

/** Bounds applied while parsing, before anything is allocated. */
export interface WireLimits {
  maxFrameBytes: number;
  maxStepTokens: number;
  hiddenSize?: number;
  maxRouteHops: number;
}

export const DEFAULT_LIMITS: WireLimits = { maxFrameBytes: 64 * 1024 * 1024, maxStepTokens: 4096, maxRouteHops: 16 };

const MAX_STRING_BYTES = 2048;

/**
 * The largest valid frame a server of this shape can be sent: a Step of `maxStepTokens` fp32 rows
 * with the longest route (plus a little room for fixed fields). Anything larger is not a valid
 * message, so it is the server's frame limit.
 */
export function maxFrameBytesFor(hiddenSize: number, maxStepTokens: number, maxRouteHops = DEFAULT_LIMITS.maxRouteHops): number {
  const header = 1 + 4 + 32 + 8 + 4 + 1 + 1 + 32; // type, request id, session, step, position, encoding, tag
  const route = 1 + maxRouteHops * (2 + MAX_STRING_BYTES + 32 + 32);
  const activations = 1 + 4 + 4 + 4 + payloadBytes("fp32", maxStepTokens, hiddenSize);
  return header + route + activations + 1024;
}

// ------------------------------------------------------------------ encoding

class Writer {
  private parts: Uint8Array[] = [];
  private size = 0;
  private push(bytes: Uint8Array): void {
    this.parts.push(bytes);
    this.size += bytes.byteLength;
  }
  u8(v: number): this {
    this.push(Uint8Array.of(v));
    return this;
  }
  u16(v: number): this {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v, true);
    this.push(b);
    return this;
  }
  u32(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    this.push(b);
    return this;
  }
  u64(v: bigint): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, true);
    this.push(b);
    return this;
  }
  u256(v: bigint): this {
    const b = new Uint8Array(32);
    let x = v;
    for (let i = 31; i >= 0; i--) {
      b[i] = Number(x & 0xffn);
      x >>= 8n;
    }
    this.push(b);
    return this;
  }
  hex(v: string, bytes: number): this {
    const b = Buffer.from(v.slice(2), "hex");
    if (b.byteLength !== bytes) throw new WireError(ErrorCode.BadFrame, `expected ${bytes} bytes of hex, got ${v}`);
    this.push(b);
    return this;
  }
  str(v: string): this {
    const b = Buffer.from(v, "utf8");
    if (b.byteLength > MAX_STRING_BYTES) throw new WireError(ErrorCode.BadFrame, `string of ${b.byteLength} bytes exceeds ${MAX_STRING_BYTES}`);
    this.u16(b.byteLength);
    this.push(b);
    return this;
  }
  bytes(v: Uint8Array): this {
    this.push(v);
    return this;
  }
  receipt(r: Receipt): this {
    this.hex(r.sessionId, 32).u64(r.step).u16(r.firstLayer).u16(r.lastLayer).hex(r.variantId, 32);
    return this.hex(r.inputHash, 32).hex(r.outputHash, 32).u32(r.tokens).hex(r.server, 20);
  }
  activations(a: EncodedActivations): this {
    return this.u8(ACTIVATION_ENCODINGS.indexOf(a.encoding)).u32(a.rows).u32(a.cols).u32(a.payload.byteLength).bytes(a.payload);
  }
  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    return out;
  }
}

export function encodeMessage(m: Message): Uint8Array {
  const w = new Writer().u8(m.type).u32(m.requestId);
  switch (m.type) {
    case MessageType.ServerInfo:
      w.u16(m.protocolVersion).u64(m.chainId).hex(m.server, 20).hex(m.variantId, 32).u16(m.firstLayer).u16(m.lastLayer);
      w.u32(m.hiddenSize).u32(m.maxSessions).u32(m.maxSessionTokens).u32(m.maxStepTokens).u32(m.maxFrameBytes);
      w.u256(m.pricePerToken).hex(m.commitments, 20).hex(m.challenge, 32).u32(m.creditSteps).u16(m.signEvery);
      break;
    case MessageType.PeerHello:
      w.hex(m.server, 20).hex(m.ephemeralKey, 32).hex(m.signature, 65);
      break;
    case MessageType.PeerWelcome:
      w.hex(m.ephemeralKey, 32).hex(m.signature, 65);
      break;
    case MessageType.OpenSession:
      w.hex(m.sessionId, 32).u32(m.maxLength);
      break;
    case MessageType.SessionOpened:
      w.hex(m.sessionId, 32).hex(m.forwardKey, 32);
      break;
    case MessageType.CloseSession:
      w.hex(m.sessionId, 32);
      break;
    case MessageType.SessionClosed:
      w.hex(m.sessionId, 32);
      if (m.chain === undefined) w.u8(0);
      else w.u8(1).u64(m.chain.lastStep).hex(m.chain.signature, 65);
      break;
    case MessageType.Step:
      w.hex(m.sessionId, 32).u64(m.step).u32(m.position).u8(ACTIVATION_ENCODINGS.indexOf(m.outputEncoding));
      if (m.tag === undefined) w.u8(0);
      else w.u8(1).hex(m.tag, 32);
      w.bytes(encodeRoute(m.route));
      w.activations(m.input);
      break;
    case MessageType.StepForwarded:
      w.hex(m.sessionId, 32).u64(m.step);
      break;
    case MessageType.StepResult:
      w.hex(m.sessionId, 32).u64(m.step).activations(m.output);
      break;
    case MessageType.StepReceipt:
      w.hex(m.sessionId, 32).u64(m.step).hex(m.signed.server, 20).u16(m.signed.firstLayer).u16(m.signed.lastLayer);
      w.hex(m.signed.inputHash, 32).hex(m.signed.outputHash, 32);
      if (m.signed.chainSignature === undefined) w.u8(0);
      else w.u8(1).hex(m.signed.chainSignature, 65);
      break;
    case MessageType.Error:
      w.u16(m.code).u8(m.hop).str(m.message);
      if (m.payment !== undefined) w.u8(1).hex(m.payment.channelId, 32).u256(m.payment.owed).u256(m.payment.covered);
      break;
    case MessageType.BindChannel:
      w.hex(m.sessionId, 32).hex(m.channelId, 32).hex(m.signature, 65);
      break;
    case MessageType.ChannelBound:
      w.hex(m.sessionId, 32).hex(m.channelId, 32).u256(m.deposit).u256(m.owed).u256(m.covered);
      break;
    case MessageType.Pay:
      w.hex(m.channelId, 32).u256(m.cumulativeAmount).hex(m.signature, 65);
      if (m.sessionId !== undefined) w.hex(m.sessionId, 32);
      break;
    case MessageType.Paid:
      w.hex(m.channelId, 32).u256(m.owed).u256(m.covered);
      break;
    case MessageType.BindTickets:
      w.hex(m.sessionId, 32).hex(m.sender, 20).hex(m.signature, 65);
      break;
    case MessageType.TicketsBound:
      w.hex(m.sessionId, 32).hex(m.recipientRandHash, 32).u256(m.owed).u256(m.covered);
      break;
    case MessageType.PayTicket: {
      const t = m.ticket;
      w.hex(m.sessionId, 32).hex(t.recipient, 20).hex(t.sender, 20).u256(t.faceValue).u256(t.winProb).u256(t.senderNonce);
      w.hex(t.recipientRandHash, 32).u64(t.expiration).hex(t.auxData, 32).hex(m.signature, 65);
      break;
    }
    case MessageType.TicketPaid:
      w.hex(m.sessionId, 32).hex(m.recipientRandHash, 32).u256(m.owed).u256(m.covered);
      break;
    case MessageType.FetchStep:
      w.hex(m.leaf, 32);
      if (m.ownerProof === undefined) w.u8(0);
      else w.u8(1).hex(m.ownerProof, 32);
      break;
    case MessageType.FetchSessionStep:
      w.hex(m.sessionId, 32).u64(m.step);
      if (m.ownerProof === undefined) w.u8(0);
      else w.u8(1).hex(m.ownerProof, 32);
      break;
    case MessageType.Authenticate:
      w.hex(m.address, 20).hex(m.signature, 65);
      break;
    case MessageType.Authenticated:
      w.hex(m.address, 20);
      break;
    case MessageType.FetchBatch:
      if (m.limit > MAX_BATCH_PAGE) throw new WireError(ErrorCode.BadFrame, `batch page of ${m.limit} receipts exceeds ${MAX_BATCH_PAGE}`);
      w.u64(m.batchId).u32(m.offset).u16(m.limit);
      break;
    case MessageType.BatchReceipts:
      if (m.receipts.length > MAX_BATCH_PAGE) throw new WireError(ErrorCode.BadFrame, `batch page of ${m.receipts.length} receipts exceeds ${MAX_BATCH_PAGE}`);
      w.u64(m.batchId).u32(m.total).u32(m.offset).u16(m.receipts.length);
      for (const r of m.receipts) w.receipt(r);
      break;
    case MessageType.StoredStep: {
      w.receipt(m.receipt);
      w.activations(m.input).activations(m.output);
      if (m.batch === undefined) w.u8(0);
      else {
        if (m.batch.proof.length > MAX_PROOF_LENGTH) throw new WireError(ErrorCode.BadFrame, `proof of ${m.batch.proof.length} hashes exceeds ${MAX_PROOF_LENGTH}`);
        w.u8(1).u64(m.batch.batchId).u8(m.batch.proof.length);
        for (const h of m.batch.proof) w.hex(h, 32);
      }
      break;
    }
  }
  return w.finish();
}

/**
 * The canonical bytes of a route: u8 hop count, then per hop its URL, session id and tag. The
 * same bytes go on the wire and into the forwarding tag of the hop before (protocol/forwarding.ts).
 */
export function encodeRoute(route: readonly Hop[]): Uint8Array {
  if (route.length > 255) throw new WireError(ErrorCode.BadRoute, `route of ${route.length} hops exceeds 255`);
  const w = new Writer().u8(route.length);
  for (const hop of route) w.str(hop.url).hex(hop.sessionId, 32).hex(hop.tag, 32);
  return w.finish();
}

// ------------------------------------------------------------------ decoding

/** The fields TicketsBound and TicketPaid share, in wire order. */
function ticketState(r: Reader): { sessionId: string; recipientRandHash: string; owed: bigint; covered: bigint } {
  return { sessionId: r.hex(32, "session id"), recipientRandHash: r.hex(32, "recipient rand hash"), owed: r.u256("amount owed"), covered: r.u256("amount covered") };
}

class Reader {
  private at = 0;
  private readonly view: DataView;
  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private need(n: number, what: string): void {
    if (this.at + n > this.bytes.byteLength) {
      throw new WireError(ErrorCode.BadFrame, `frame ends inside ${what}: needs ${n} bytes at offset ${this.at}, frame has ${this.bytes.byteLength}`);
    }
  }
  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.at++);
  }
  u16(what: string): number {
    this.need(2, what);
    const v = this.view.getUint16(this.at, true);
    this.at += 2;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.at, true);
    this.at += 4;
    return v;
  }
  u64(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigUint64(this.at, true);
    this.at += 8;
    return v;
  }
  u256(what: string): bigint {
    this.need(32, what);
    let v = 0n;
    for (let i = 0; i < 32; i++) v = (v << 8n) | BigInt(this.bytes[this.at + i]!);
    this.at += 32;
    return v;
  }
  raw(n: number, what: string): Uint8Array {
    this.need(n, what);
    const out = this.bytes.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  hex(n: number, what: string): string {
    return hexlify(this.raw(n, what));
  }
  address(what: string): string {
    return checksumAddress(this.hex(20, what)); // 20 bytes read: always a well-formed address
  }
  str(what: string): string {
    const n = this.u16(`${what} length`);
    if (n > MAX_STRING_BYTES) throw new WireError(ErrorCode.BadFrame, `${what} of ${n} bytes exceeds ${MAX_STRING_BYTES}`);
    return new TextDecoder("utf-8", { fatal: false }).decode(this.raw(n, what));
  }
  encoding(what: string): ActivationEncoding {
    const code = this.u8(what);
    const e = ACTIVATION_ENCODINGS[code];
    if (e === undefined) throw new WireError(ErrorCode.BadEncoding, `${what} ${code} is not an encoding (0 fp32, 1 fp16, 2 int8)`);
    return e;
  }
  activations(limits: WireLimits, what: string): EncodedActivations {
    const encoding = this.encoding(`${what} encoding`);
    const rows = this.u32(`${what} rows`);
    const cols = this.u32(`${what} cols`);
    const length = this.u32(`${what} length`);
    if (rows < 1 || rows > limits.maxStepTokens) {
      throw new WireError(ErrorCode.BadShape, `${what} has ${rows} rows, expected 1..${limits.maxStepTokens}`);
    }
    if (limits.hiddenSize !== undefined && cols !== limits.hiddenSize) {
      throw new WireError(ErrorCode.BadShape, `${what} has ${cols} columns, expected the hidden size ${limits.hiddenSize}`);
    }
    if (cols < 1) throw new WireError(ErrorCode.BadShape, `${what} has 0 columns`);
    const expected = payloadBytes(encoding, rows, cols);
    if (length !== expected) {
      throw new WireError(ErrorCode.BadShape, `${what}: ${encoding} ${rows}×${cols} needs ${expected} bytes, header says ${length}`);
    }
    return { encoding, rows, cols, payload: this.raw(length, `${what} payload`) };
  }
  receipt(what: string): Receipt {
    return {
      sessionId: this.hex(32, `${what} session id`),
      step: this.u64(`${what} step`),
      firstLayer: this.u16(`${what} first layer`),
      lastLayer: this.u16(`${what} last layer`),
      variantId: this.hex(32, `${what} variant id`),
      inputHash: this.hex(32, `${what} input hash`),
      outputHash: this.hex(32, `${what} output hash`),
      tokens: this.u32(`${what} tokens`),
      server: this.address(`${what} server`),
    };
  }
  /** An optional owner proof: a flag byte, then 32 bytes when it is 1. */
  ownerProof(): { ownerProof?: string } {
    const flag = this.u8("owner proof flag");
    if (flag > 1) throw new WireError(ErrorCode.BadFrame, `owner proof flag ${flag} is neither 0 (none) nor 1 (a 32-byte proof follows)`);
    return flag === 1 ? { ownerProof: this.hex(32, "owner proof") } : {};
  }
  /** An optional receipt chain signature: a flag byte, then 65 bytes when it is 1. */
  chainSignature(): { chainSignature?: string } {
    const flag = this.u8("chain signature flag");
    if (flag > 1) throw new WireError(ErrorCode.BadFrame, `chain signature flag ${flag} is neither 0 (none) nor 1 (a 65-byte signature follows)`);
    return flag === 1 ? { chainSignature: this.hex(65, "chain signature") } : {};
  }
  atEnd(): boolean {
    return this.at === this.bytes.byteLength;
  }
  end(): void {
    if (this.at !== this.bytes.byteLength) {
      throw new WireError(ErrorCode.BadFrame, `${this.bytes.byteLength - this.at} unexpected bytes after the message`);
    }
  }
}

/** Parses one frame into a typed message, or throws a `WireError` saying what is wrong. */
/**
 * The protocol version a ServerInfo frame announces, read before the rest of it (whose layout depends
 * on the version: a peer of another version gets told so, not that its hello is malformed);
 * undefined for any other frame.
 */
export function announcedVersion(frame: Uint8Array): number | undefined {
  if (frame.byteLength < 7 || frame[0] !== MessageType.ServerInfo) return undefined;
  return new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint16(5, true);
}

export function decodeMessage(frame: Uint8Array, limits: WireLimits = DEFAULT_LIMITS): Message {
  if (frame.byteLength > limits.maxFrameBytes) {
    throw new WireError(ErrorCode.TooLarge, `frame of ${frame.byteLength} bytes exceeds the limit of ${limits.maxFrameBytes}`);
  }
  const r = new Reader(frame);
  const type = r.u8("message type");
  const requestId = r.u32("request id");
  let m: Message;
  switch (type) {
    case MessageType.ServerInfo:
      m = {
        type,
        requestId: 0,
        protocolVersion: r.u16("protocol version"),
        chainId: r.u64("chain id"),
        server: r.address("server"),
        variantId: r.hex(32, "variant id"),
        firstLayer: r.u16("first layer"),
        lastLayer: r.u16("last layer"),
        hiddenSize: r.u32("hidden size"),
        maxSessions: r.u32("max sessions"),
        maxSessionTokens: r.u32("max session tokens"),
        maxStepTokens: r.u32("max step tokens"),
        maxFrameBytes: r.u32("max frame bytes"),
        pricePerToken: r.u256("price per token"),
        commitments: r.address("commitments"),
        challenge: r.hex(32, "challenge"),
        creditSteps: r.u32("credit steps"),
        signEvery: r.u16("sign every"),
      };
      if (m.signEvery < 1 || m.signEvery > MAX_SIGN_EVERY) {
        throw new WireError(ErrorCode.BadFrame, `a server signs its receipt chains every 1..${MAX_SIGN_EVERY} steps, this one announces ${m.signEvery}`);
      }
      break;
    case MessageType.PeerHello:
      m = { type, requestId, server: r.address("server"), ephemeralKey: r.hex(32, "ephemeral key"), signature: r.hex(65, "signature") };
      break;
    case MessageType.PeerWelcome:
      m = { type, requestId, ephemeralKey: r.hex(32, "ephemeral key"), signature: r.hex(65, "signature") };
      break;
    case MessageType.OpenSession:
      m = { type, requestId, sessionId: r.hex(32, "session id"), maxLength: r.u32("max length") };
      break;
    case MessageType.SessionOpened:
      m = { type, requestId, sessionId: r.hex(32, "session id"), forwardKey: r.hex(32, "forward key") };
      break;
    case MessageType.CloseSession:
      m = { type, requestId, sessionId: r.hex(32, "session id") };
      break;
    case MessageType.SessionClosed: {
      const sessionId = r.hex(32, "session id");
      const flag = r.u8("chain flag");
      if (flag > 1) throw new WireError(ErrorCode.BadFrame, `chain flag ${flag} is neither 0 (nothing left to sign) nor 1 (a signed chain follows)`);
      m = { type, requestId, sessionId, ...(flag === 1 ? { chain: { lastStep: r.u64("chain last step"), signature: r.hex(65, "chain signature") } } : {}) };
      break;
    }
    case MessageType.Step: {
      const sessionId = r.hex(32, "session id");
      const step = r.u64("step");
      const position = r.u32("position");
      const outputEncoding = r.encoding("output encoding");
      const tagFlag = r.u8("tag flag");
      if (tagFlag > 1) throw new WireError(ErrorCode.BadFrame, `tag flag ${tagFlag} is neither 0 (no tag) nor 1 (a 32-byte tag follows)`);
      const tag = tagFlag === 1 ? r.hex(32, "tag") : undefined;
      const hopCount = r.u8("route length");
      if (hopCount > limits.maxRouteHops) {
        throw new WireError(ErrorCode.BadRoute, `route of ${hopCount} hops exceeds the limit of ${limits.maxRouteHops}`);
      }
      const route: Hop[] = [];
      for (let i = 0; i < hopCount; i++) {
        route.push({ url: r.str(`hop ${i} url`), sessionId: r.hex(32, `hop ${i} session id`), tag: r.hex(32, `hop ${i} tag`) });
      }
      const input = r.activations(limits, "input");
      m = { type, requestId, sessionId, step, position, outputEncoding, route, input, ...(tag === undefined ? {} : { tag }) };
      break;
    }
    case MessageType.StepForwarded:
      m = { type, requestId, sessionId: r.hex(32, "session id"), step: r.u64("step") };
      break;
    case MessageType.StepResult:
      m = { type, requestId, sessionId: r.hex(32, "session id"), step: r.u64("step"), output: r.activations(limits, "output") };
      break;
    case MessageType.StepReceipt:
      m = {
        type,
        requestId,
        sessionId: r.hex(32, "session id"),
        step: r.u64("step"),
        signed: {
          server: r.address("server"),
          firstLayer: r.u16("first layer"),
          lastLayer: r.u16("last layer"),
          inputHash: r.hex(32, "input hash"),
          outputHash: r.hex(32, "output hash"),
          ...r.chainSignature(),
        },
      };
      break;
    case MessageType.FetchStep: {
      const leaf = r.hex(32, "leaf");
      m = { type, requestId, leaf, ...r.ownerProof() };
      break;
    }
    case MessageType.FetchSessionStep: {
      const sessionId = r.hex(32, "session id");
      const step = r.u64("step");
      m = { type, requestId, sessionId, step, ...r.ownerProof() };
      break;
    }
    case MessageType.Authenticate:
      m = { type, requestId, address: r.address("address"), signature: r.hex(65, "signature") };
      break;
    case MessageType.Authenticated:
      m = { type, requestId, address: r.address("address") };
      break;
    case MessageType.FetchBatch: {
      const batchId = r.u64("batch id");
      const offset = r.u32("offset");
      const limit = r.u16("limit");
      if (limit < 1 || limit > MAX_BATCH_PAGE) throw new WireError(ErrorCode.BadFrame, `batch page of ${limit} receipts is outside 1..${MAX_BATCH_PAGE}`);
      m = { type, requestId, batchId, offset, limit };
      break;
    }
    case MessageType.BatchReceipts: {
      const batchId = r.u64("batch id");
      const total = r.u32("total");
      const offset = r.u32("offset");
      const n = r.u16("receipt count");
      if (n > MAX_BATCH_PAGE) throw new WireError(ErrorCode.BadFrame, `batch page of ${n} receipts exceeds ${MAX_BATCH_PAGE}`);
      const receipts = Array.from({ length: n }, (_, i) => r.receipt(`receipt ${i}`));
      m = { type, requestId, batchId, total, offset, receipts };
      break;
    }
    case MessageType.StoredStep: {
      const receipt = r.receipt("receipt");
      const input = r.activations(limits, "input");
      const output = r.activations(limits, "output");
      const batchFlag = r.u8("batch flag");
      if (batchFlag > 1) throw new WireError(ErrorCode.BadFrame, `batch flag ${batchFlag} is neither 0 (not committed) nor 1 (batch and proof follow)`);
      let batch: StoredStep["batch"];
      if (batchFlag === 1) {
        const batchId = r.u64("batch id");
        const n = r.u8("proof length");
        if (n > MAX_PROOF_LENGTH) throw new WireError(ErrorCode.BadFrame, `proof of ${n} hashes exceeds ${MAX_PROOF_LENGTH}`);
        batch = { batchId, proof: Array.from({ length: n }, (_, i) => r.hex(32, `proof hash ${i}`)) };
      }
      m = { type, requestId, receipt, input, output, ...(batch === undefined ? {} : { batch }) };
      break;
    }
    case MessageType.Error: {
      const code = r.u16("error code");
      m = { type, requestId, code: code as ErrorCodeValue, hop: r.u8("error hop"), message: r.str("error message") };
      if (!r.atEnd()) {
        const flag = r.u8("payment flag");
        if (flag !== 1) throw new WireError(ErrorCode.BadFrame, `payment flag ${flag} after an error message must be 1 (channel, owed, covered follow)`);
        m.payment = { channelId: r.hex(32, "payment channel id"), owed: r.u256("amount owed"), covered: r.u256("amount covered") };
      }
      break;
    }
    case MessageType.BindChannel:
      m = { type, requestId, sessionId: r.hex(32, "session id"), channelId: r.hex(32, "channel id"), signature: r.hex(65, "binding signature") };
      break;
    case MessageType.ChannelBound:
      m = {
        type,
        requestId,
        sessionId: r.hex(32, "session id"),
        channelId: r.hex(32, "channel id"),
        deposit: r.u256("deposit"),
        owed: r.u256("amount owed"),
        covered: r.u256("amount covered"),
      };
      break;
    case MessageType.Pay: {
      const pay: Pay = { type, requestId, channelId: r.hex(32, "channel id"), cumulativeAmount: r.u256("cumulative amount"), signature: r.hex(65, "voucher signature") };
      if (!r.atEnd()) pay.sessionId = r.hex(32, "paid session id");
      m = pay;
      break;
    }
    case MessageType.Paid:
      m = { type, requestId, channelId: r.hex(32, "channel id"), owed: r.u256("amount owed"), covered: r.u256("amount covered") };
      break;
    case MessageType.BindTickets:
      m = { type, requestId, sessionId: r.hex(32, "session id"), sender: r.address("ticket sender"), signature: r.hex(65, "binding signature") };
      break;
    case MessageType.TicketsBound:
      m = { type, requestId, ...ticketState(r) };
      break;
    case MessageType.TicketPaid:
      m = { type, requestId, ...ticketState(r) };
      break;
    case MessageType.PayTicket: {
      const sessionId = r.hex(32, "session id");
      const ticket: Ticket = {
        recipient: r.address("ticket recipient"),
        sender: r.address("ticket sender"),
        faceValue: r.u256("ticket face value"),
        winProb: r.u256("ticket win probability"),
        senderNonce: r.u256("ticket sender nonce"),
        recipientRandHash: r.hex(32, "ticket recipient rand hash"),
        expiration: r.u64("ticket expiration"),
        auxData: r.hex(32, "ticket aux data"),
      };
      m = { type, requestId, sessionId, ticket, signature: r.hex(65, "ticket signature") };
      break;
    }
    default:
      throw new WireError(ErrorCode.UnknownType, `unknown message type ${type}`);
  }
  r.end();
  return m;
}
