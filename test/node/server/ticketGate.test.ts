import { SigningKey, ZeroHash, computeAddress, keccak256, toUtf8Bytes } from "ethers";
import { describe, expect, it } from "vitest";
import { signBinding } from "../../../protocol/payment.js";
import { recipientRandHash, signTicketSync, ticketAccountId, ticketDomain, ticketTerms, type Ticket } from "../../../protocol/tickets.js";
import { ErrorCode, MessageType, WireError } from "../../../protocol/wire.js";
import { TicketGate, type ChainSender } from "../../../node/server/ticketGate.js";
import type { WinningTicket } from "../../../node/store/ticketStore.js";

const clientKey = new SigningKey(keccak256(toUtf8Bytes("gate client")));
const CLIENT = computeAddress(clientKey.publicKey);
const SERVER = computeAddress(new SigningKey(keccak256(toUtf8Bytes("gate server"))).publicKey);
const domain = ticketDomain(31337n, "0x00000000000000000000000000000000000000B0");
const CHALLENGE = keccak256(toUtf8Bytes("challenge"));
const SESSION = keccak256(toUtf8Bytes("session"));
const NOW = 1_800_000_000;
const PRICE = 10n;

function gate(funds: ChainSender, winners: WinningTicket[] = []): TicketGate {
  let r = 0n;
  return new TicketGate({
    pricePerToken: PRICE,
    server: SERVER,
    ticketDomain: domain,
    readSender: () => Promise.resolve(funds),
    onWinner: (_hash, w) => void winners.push(w),
    randomRand: () => ++r,
    nowSeconds: () => NOW,
  });
}

const bindMsg = { type: MessageType.BindTickets, requestId: 1, sessionId: SESSION, sender: CLIENT, signature: signBinding(clientKey, domain, { channelId: ticketAccountId(CLIENT), sessionId: SESSION, server: SERVER, challenge: CHALLENGE }) } as const;

async function failure(p: Promise<unknown> | (() => unknown)): Promise<WireError> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (err) {
    if (err instanceof WireError) return err;
    throw err;
  }
  throw new Error("no error");
}

const funded: ChainSender = { deposit: 1_000n, reserveShare: 0n, withdrawableAt: 0n };

describe("TicketGate", () => {
  it("refuses steps of an unbound session, and binding by a client that is unlocking or unfunded", async () => {
    const g = gate(funded);
    const e = await failure(() => g.charge(SESSION, 0n, 2));
    expect([e.wireCode, e.message, e.payment]).toEqual([
      ErrorCode.PaymentRequired,
      `session ${SESSION} has no ticket deposit: bind one (BindTickets) first; this server charges 10 per token`,
      { channelId: ZeroHash, owed: 20n, covered: 0n },
    ]);
    const unlocking = await failure(gate({ ...funded, withdrawableAt: 5n }).bind(bindMsg, CHALLENGE));
    expect(unlocking.message).toBe(`${CLIENT} is unlocking its ticket deposit (withdrawable at 5): cancel the unlock or fund again`);
    const empty = await failure(gate({ deposit: 9n, reserveShare: 0n, withdrawableAt: 0n }).bind(bindMsg, CHALLENGE));
    expect(empty.message).toBe(`${CLIENT} has 9 deposited in the ticket broker (reserve share 0); a token costs 10: fund it`);
    const forged = await failure(gate(funded).bind(bindMsg, keccak256("0x00")));
    expect(forged.wireCode).toBe(ErrorCode.Forbidden);
  });

  it("admits one unpaid step (the default credit), then needs tickets covering it; a winner goes to onWinner and rotates the commitment", async () => {
    const winners: WinningTicket[] = [];
    const g = gate(funded, winners);
    const bound = await g.bind(bindMsg, CHALLENGE);
    expect(bound.recipientRandHash).toBe(recipientRandHash(1n));
    g.charge(SESSION, 0n, 3);
    const blocked = await failure(() => g.charge(SESSION, 1n, 1));
    expect([blocked.wireCode, blocked.payment]).toEqual([ErrorCode.PaymentRequired, { channelId: ticketAccountId(CLIENT), owed: 30n, covered: 0n }]);
    const t: Ticket = { recipient: SERVER, sender: CLIENT, ...ticketTerms(30n, 1n), senderNonce: 1n, recipientRandHash: bound.recipientRandHash, expiration: BigInt(NOW + 7_200), auxData: SESSION };
    const paid = await g.pay({ type: MessageType.PayTicket, requestId: 2, sessionId: SESSION, ticket: t, signature: signTicketSync(clientKey, domain, t) });
    expect([paid.owed, paid.covered, paid.recipientRandHash]).toEqual([30n, 30n, recipientRandHash(2n)]);
    expect(winners.map((w) => [w.ticket.senderNonce, w.recipientRand])).toEqual([[1n, 1n]]);
    const undo = g.charge(SESSION, 1n, 1);
    undo();
    g.charge(SESSION, 1n, 1); // the undone step did not count against the credit
  });

  it("refuses a ticket that expires too soon, whose face value the deposit cannot pay, or worth less than owed", async () => {
    const g = gate({ deposit: 100n, reserveShare: 20n, withdrawableAt: 0n });
    const bound = await g.bind(bindMsg, CHALLENGE);
    g.charge(SESSION, 0n, 1);
    const base: Ticket = { recipient: SERVER, sender: CLIENT, faceValue: 160n, winProb: 1n << 252n, senderNonce: 1n, recipientRandHash: bound.recipientRandHash, expiration: BigInt(NOW + 3_600), auxData: SESSION };
    const pay = (t: Ticket) => g.pay({ type: MessageType.PayTicket, requestId: 2, sessionId: SESSION, ticket: t, signature: signTicketSync(clientKey, domain, t) });
    const soon = await failure(pay({ ...base, expiration: BigInt(NOW + 3_599) }));
    expect(soon.message).toBe(`ticket 1 of session ${SESSION} expires at ${NOW + 3_599}; it must stay valid until at least ${NOW + 3_600}`);
    const big = await failure(pay(base));
    expect(big.message).toBe(`ticket 1 of session ${SESSION} has face value 160; ${CLIENT}'s deposit 100 and reserve share 20 cannot pay it`);
    const under = await failure(pay({ ...base, faceValue: 120n, senderNonce: 2n })); // worth 7.5 of the 10 owed
    expect([under.message, under.payment]).toEqual([
      `ticket 2 of session ${SESSION} is refused: its expected value 7 leaves 3 of the 10 owed uncovered (covered so far: 0)`,
      { channelId: ticketAccountId(CLIENT), owed: 10n, covered: 0n },
    ]);
  });

  it("trusts a client's funds as read for senderInfoMaxAgeMs, reads them afresh after it and at every binding, and forgets a failed read", async () => {
    let clock = 0;
    let reads = 0;
    const answers: (ChainSender | Error)[] = [funded, funded, { ...funded, withdrawableAt: 9n }, new Error("node down"), funded];
    const g = new TicketGate({
      pricePerToken: PRICE,
      server: SERVER,
      ticketDomain: domain,
      readSender: () => {
        const a = answers[reads++]!;
        return a instanceof Error ? Promise.reject(a) : Promise.resolve(a);
      },
      onWinner: () => undefined,
      nowSeconds: () => NOW,
      clockMs: () => clock,
      senderInfoMaxAgeMs: 5_000,
    });
    let randHash = (await g.bind(bindMsg, CHALLENGE)).recipientRandHash;
    let nonce = 0n;
    /** Charges a 1-token step and pays it with a certain ticket (which wins: the commitment rotates); a refused ticket undoes the charge. */
    const payStep = async (): Promise<void> => {
      const undo = g.charge(SESSION, nonce, 1);
      const t: Ticket = { recipient: SERVER, sender: CLIENT, ...ticketTerms(10n, 1n), senderNonce: ++nonce, recipientRandHash: randHash, expiration: BigInt(NOW + 7_200), auxData: SESSION };
      try {
        randHash = (await g.pay({ type: MessageType.PayTicket, requestId: 2, sessionId: SESSION, ticket: t, signature: signTicketSync(clientKey, domain, t) })).recipientRandHash;
      } catch (err) {
        undo();
        throw err;
      }
    };
    await payStep(); // at 0: the binding's read
    clock = 5_000;
    await payStep(); // 5 s after it: still trusted
    expect(reads).toBe(1);
    clock = 5_001;
    await payStep(); // past 5 s: read again
    expect(reads).toBe(2);
    // a binding reads afresh, within the window too; what it read (the client began to unlock) holds for the tickets after it
    const rebind = await failure(g.bind(bindMsg, CHALLENGE));
    expect(rebind.message).toBe(`${CLIENT} is unlocking its ticket deposit (withdrawable at 9): cancel the unlock or fund again`);
    const unlocking = await failure(payStep());
    expect([unlocking.wireCode, unlocking.message, reads]).toEqual([ErrorCode.PaymentRequired, `${CLIENT} is unlocking its ticket deposit: no more tickets are accepted`, 3]);
    clock = 10_002;
    await expect(payStep()).rejects.toThrow("node down");
    await payStep(); // the failed read was not kept: read once more, funded
    expect(reads).toBe(5);
  });

  it("refuses a negative senderInfoMaxAgeMs by name", () => {
    expect(() => new TicketGate({ pricePerToken: PRICE, server: SERVER, ticketDomain: domain, readSender: () => Promise.resolve(funded), onWinner: () => undefined, senderInfoMaxAgeMs: -1 })).toThrow(
      "ticket gate senderInfoMaxAgeMs must be an integer ≥ 0, got -1",
    );
  });
});
