import { SigningKey, ZeroHash, computeAddress, keccak256, toUtf8Bytes } from "ethers";
import { afterAll, describe, expect, it } from "vitest";
import { TicketLedger } from "../../client/payment/ticketLedger.js";
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
  it("never gives one nonce twice, across two handles on one file (two processes), and counts what each server was handed", () => {
    const path = `${scratch.dir}/wallet.sqlite`;
    const [a, b] = [TicketLedger.open(path), TicketLedger.open(path)];
    const nonces: bigint[] = [];
    for (let i = 0; i < 6; i++) {
      const { ticket, signature } = (i % 2 === 0 ? a : b).signNext(key, domain, build);
      expect(recoverTicketSigner(domain, ticket, signature)).toBe(ticket.sender);
      nonces.push(ticket.senderNonce);
    }
    expect(nonces).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
    // face 80, p = 1/8: each ticket is worth exactly 10
    expect(a.totals(31337n, domain.verifyingContract as string)).toEqual([{ recipient: SERVER, tickets: 6, expectedValue: 60n }]);
    a.close();
    b.close();
    const reopened = TicketLedger.open(path);
    expect(reopened.signNext(key, domain, build).ticket.senderNonce).toBe(7n);
    reopened.close();
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
