import { SigningKey, ZeroHash, computeAddress, keccak256, toUtf8Bytes } from "ethers";
import { afterAll, describe, expect, it } from "vitest";
import { NONCE_BLOCK, TicketLedger } from "../../client/payment/ticketLedger.js";
import { recipientRandHash, recoverTicketSigner, ticketDomain, ticketTerms, type Ticket } from "../../protocol/tickets.js";
import { scratchDir } from "../engine/helpers.js";

const scratch = scratchDir();
afterAll(() => scratch.cleanup());
const key = new SigningKey(keccak256(toUtf8Bytes("ledger test key")));
const domain = ticketDomain(31337n, "0x00000000000000000000000000000000000000B0");
const SERVER = "0x00000000000000000000000000000000000000A1";
const build = (senderNonce: bigint): Ticket => ({
  recipient: SERVER,
  sender: computeAddress(key.publicKey),
  ...ticketTerms(10n, 80n),
  senderNonce,
  recipientRandHash: recipientRandHash(1n),
  expiration: 2_000_000_000n,
  auxData: ZeroHash,
});

describe("TicketLedger", () => {
  it("never gives one nonce twice, across two handles on one file (two processes) and a reopening, and counts what each server was handed", () => {
    const path = `${scratch.dir}/wallet.sqlite`;
    const [a, b] = [TicketLedger.open(path), TicketLedger.open(path)];
    const nonces: bigint[] = [];
    for (let i = 0; i < 6; i++) {
      const { ticket, signature } = (i % 2 === 0 ? a : b).signNext(key, domain, build);
      expect(recoverTicketSigner(domain, ticket, signature)).toBe(ticket.sender);
      nonces.push(ticket.senderNonce);
    }
    // each handle reserved a block of its own from the file: a the first, b the second
    const B = BigInt(NONCE_BLOCK);
    expect(nonces).toEqual([1n, B + 1n, 2n, B + 2n, 3n, B + 3n]);
    // face 80, p = 1/8: each ticket is worth exactly 10
    expect(a.totals(31337n, domain.verifyingContract as string)).toEqual([{ recipient: SERVER, tickets: 6, expectedValue: 60n }]);
    a.close();
    b.close();
    // a handle opened later (a restarted process) skips what the others reserved and left unused
    const reopened = TicketLedger.open(path);
    expect(reopened.signNext(key, domain, build).ticket.senderNonce).toBe(2n * B + 1n);
    reopened.close();
  });

  it("reserves the next block when a handle has used its own, and a block is per sender", () => {
    const ledger = TicketLedger.open(`${scratch.dir}/blocks.sqlite`);
    const nonces = Array.from({ length: NONCE_BLOCK + 1 }, () => ledger.signNext(key, domain, build).ticket.senderNonce);
    expect(nonces).toEqual(Array.from({ length: NONCE_BLOCK + 1 }, (_, i) => BigInt(i + 1)));
    const other = new SigningKey(keccak256(toUtf8Bytes("another sender")));
    const theirs = ledger.signNext(other, domain, (n) => ({ ...build(n), sender: computeAddress(other.publicKey) })).ticket.senderNonce;
    expect(theirs).toBe(1n);
    expect(ledger.totals(31337n, domain.verifyingContract as string)).toEqual([{ recipient: SERVER, tickets: NONCE_BLOCK + 2, expectedValue: BigInt(NONCE_BLOCK + 2) * 10n }]);
    ledger.close();
  });

  it("does not spend a nonce when building the ticket fails", () => {
    const ledger = TicketLedger.open(`${scratch.dir}/failing.sqlite`);
    expect(() =>
      ledger.signNext(key, domain, () => {
        throw new Error("no commitment");
      }),
    ).toThrow("no commitment");
    expect(ledger.signNext(key, domain, build).ticket.senderNonce).toBe(1n);
    expect(() => ledger.signNext(key, { name: "x" }, build)).toThrow("the ticket domain must name a chainId and a verifyingContract");
    ledger.close();
  });
});
