import { SigningKey, TypedDataEncoder, ZeroHash, computeAddress, keccak256, toUtf8Bytes } from "ethers";
import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../protocol/errors.js";
import {
  CERTAIN_WIN_PROB,
  TICKET_TYPES,
  TWO_POW_256,
  expectedValueScaled,
  isWinningTicket,
  recipientRandHash,
  recoverTicketSigner,
  signTicketSync,
  ticketAccountId,
  ticketDomain,
  ticketHash,
  ticketTerms,
  type Ticket,
} from "../../protocol/tickets.js";
import { ErrorCode, MessageType, WireError, decodeMessage, encodeMessage, type PayTicket } from "../../protocol/wire.js";

const key = new SigningKey(keccak256(toUtf8Bytes("tickets test key")));
const domain = ticketDomain(31337n, "0x00000000000000000000000000000000000000B0");
const ticket = (over: Partial<Ticket> = {}): Ticket => ({
  recipient: "0x00000000000000000000000000000000000000A1",
  sender: computeAddress(key.publicKey),
  faceValue: 1_000n,
  winProb: 1n << 252n,
  senderNonce: 1n,
  recipientRandHash: recipientRandHash(42n),
  expiration: 2_000_000_000n,
  auxData: ZeroHash,
  ...over,
});

describe("ticketTerms", () => {
  it("gives face value owed·2^j at most the target and probability 2^-j: the expected value is exactly what is owed", () => {
    for (const [owed, target, face, j] of [
      [1_000n, 1_000_000n, 1_000n << 9n, 9n],
      [3n, 7n, 6n, 1n],
      [5n, 5n, 5n, 0n],
      [9n, 1n, 9n, 0n],
    ] as const) {
      const t = ticketTerms(owed, target);
      expect([t.faceValue, t.winProb]).toEqual([face, j === 0n ? CERTAIN_WIN_PROB : TWO_POW_256 >> j]);
      expect(expectedValueScaled(t.faceValue, t.winProb)).toBe(owed * TWO_POW_256);
    }
  });

  it("refuses a non-positive amount or target, naming the value", () => {
    expect(() => ticketTerms(0n, 10n)).toThrow(new InvalidArgumentError("a ticket must pay a positive amount, got 0"));
    expect(() => ticketTerms(1n, -1n)).toThrow(new InvalidArgumentError("targetFaceValue must be positive, got -1"));
  });
});

describe("win check", () => {
  it("wins close to winProb / 2^256 of fixed tickets (derandomised: the same 1,024 tickets every run)", () => {
    let wins = 0;
    for (let n = 1n; n <= 1_024n; n++) if (isWinningTicket(ticketHash(domain, ticket({ senderNonce: n })), 42n, 1n << 253n)) wins++;
    // p = 1/8: 128 expected, σ ≈ 10.6; the fixed draw is pinned, and it lies within 3σ
    expect(wins).toBe(PINNED_WINS);
    expect(Math.abs(wins - 128)).toBeLessThan(32);
  });

  it("always wins at CERTAIN_WIN_PROB, never at 0", () => {
    expect(isWinningTicket(ZeroHash, 0n, CERTAIN_WIN_PROB)).toBe(true);
    expect(isWinningTicket(ZeroHash, 0n, 0n)).toBe(false);
  });
});

describe("tickets", () => {
  it("hash as ethers' generic EIP-712 encoder does, field for field at the extremes of each type and under two domains", () => {
    const variants: Partial<Ticket>[] = [
      {},
      { faceValue: TWO_POW_256 - 1n, winProb: CERTAIN_WIN_PROB, senderNonce: TWO_POW_256 - 1n, expiration: (1n << 64n) - 1n },
      { faceValue: 1n, winProb: 1n, senderNonce: 0n, expiration: 0n, recipientRandHash: keccak256(toUtf8Bytes("r")), auxData: keccak256(toUtf8Bytes("a")) },
      { recipient: "0xffffffffffffffffffffffffffffffffffffffff", sender: "0x0000000000000000000000000000000000000001" },
    ];
    for (const d of [domain, ticketDomain(1n, "0x00000000000000000000000000000000000000F1")]) {
      for (const v of variants) {
        const t = ticket(v);
        expect(ticketHash(d, t)).toBe(TypedDataEncoder.hash(d, TICKET_TYPES, t));
      }
    }
  });

  it("recover their signer under their own domain only", () => {
    const t = ticket();
    const sig = signTicketSync(key, domain, t);
    expect(recoverTicketSigner(domain, t, sig)).toBe(t.sender);
    expect(recoverTicketSigner(ticketDomain(1n, domain.verifyingContract as string), t, sig)).not.toBe(t.sender);
  });

  it("refuse fields out of range, naming them", () => {
    expect(() => ticketHash(domain, ticket({ faceValue: 0n }))).toThrow("ticket.faceValue must be positive");
    expect(() => ticketHash(domain, ticket({ winProb: TWO_POW_256 }))).toThrow(`ticket.winProb ${TWO_POW_256} must be in [0, 2^256)`);
    expect(() => ticketHash(domain, ticket({ auxData: "0x12" }))).toThrow("ticket.auxData must be 32 bytes of hex, got 0x12");
  });

  it("name a client's deposit by its left-padded address", () => {
    expect(ticketAccountId("0x00000000000000000000000000000000000000A1")).toBe(`0x${"0".repeat(62)}a1`);
  });
});

describe("ticket wire messages", () => {
  it("round-trip PayTicket, BindTickets, TicketsBound and TicketPaid", () => {
    const t = ticket();
    const pay: PayTicket = { type: MessageType.PayTicket, requestId: 7, sessionId: keccak256("0x01"), ticket: t, signature: signTicketSync(key, domain, t) };
    expect(decodeMessage(encodeMessage(pay))).toEqual(pay);
    const bind = { type: MessageType.BindTickets, requestId: 8, sessionId: keccak256("0x02"), sender: t.sender, signature: pay.signature } as const;
    expect(decodeMessage(encodeMessage(bind))).toEqual(bind);
    for (const type of [MessageType.TicketsBound, MessageType.TicketPaid] as const) {
      const m = { type, requestId: 9, sessionId: keccak256("0x03"), recipientRandHash: t.recipientRandHash, owed: 5n, covered: 4n };
      expect(decodeMessage(encodeMessage(m))).toEqual(m);
    }
  });

  it("refuses a truncated PayTicket with a BadFrame error naming the field", () => {
    const t = ticket();
    const frame = encodeMessage({ type: MessageType.PayTicket, requestId: 7, sessionId: ZeroHash, ticket: t, signature: signTicketSync(key, domain, t) });
    const cut = frame.slice(0, frame.length - 10);
    let err: unknown;
    try {
      decodeMessage(cut);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WireError);
    expect((err as WireError).wireCode).toBe(ErrorCode.BadFrame);
    expect((err as WireError).message).toContain("ticket signature");
  });
});

/** The number of winners among the fixed tickets above (computed once; a change means the hashing changed). */
const PINNED_WINS = 127;
