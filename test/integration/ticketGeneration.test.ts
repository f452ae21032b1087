import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { type JsonRpcProvider, Wallet, formatEther, hexlify, keccak256, parseEther, randomBytes, toUtf8Bytes } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TicketLedger } from "../../client/payment/ticketLedger.js";
import { TicketPayer } from "../../client/payment/ticketPayer.js";
import { ShardConnection } from "../../client/shardClient.js";
import { encodeActivations } from "../../protocol/activations.js";
import { ticketAccountId, ticketDomain } from "../../protocol/tickets.js";
import { ErrorCode } from "../../protocol/wire.js";
import { EFedToken__factory, TicketBroker__factory, type EFedToken, type TicketBroker } from "../../types/ethers-contracts/index.js";
import { scratchDir } from "../engine/helpers.js";
import { stopProcess } from "../support/efedProcess.js";
import { startHardhatNode, type LocalChain } from "../support/hardhatNode.js";
import { KEYS, SERVERS, SHIPPED_MODEL, address, runPricedServers, startPricedServers, type PricedServers, type Who } from "../support/pricedServers.js";

/**
 * Tickets end to end as a user runs them: two priced `efed server`s on a deployment with a
 * TicketBroker, a client that funds its ticket deposit with `efed wallet fund` and pays a forwarded
 * and a relayed `efed generate --pay tickets` with certain tickets (a face value target of one base
 * unit: probability 1), so each server's redemptions equal price × tokens exactly; a client that
 * stops paying is refused with PaymentRequired at its next step.
 */
const PRICE = parseEther("0.001");
const FEE_BPS = 500n; // the devnet fee

describe("a generation paid with tickets over two priced servers, on a Hardhat node", () => {
  const scratch = scratchDir();
  const walletFile = join(scratch.dir, "wallet.json");
  const children: ChildProcess[] = [];
  let chain: LocalChain;
  let provider: JsonRpcProvider;
  let token: EFedToken;
  let broker: TicketBroker;
  let urls: string[];
  let efed: PricedServers["efed"];
  let onChain: () => string[];
  let serverBalances: bigint[];
  let priced: PricedServers;

  /** What `who` was paid by the broker for the client's tickets (to it plus the fee), from its events. */
  const redeemedFor = async (who: Who): Promise<bigint> => {
    const events = await broker.queryFilter(broker.filters.WinningTicketRedeemed(undefined, address("client"), address(who)));
    return events.reduce((sum, e) => sum + e.args.paidToRecipient + e.args.fee, 0n);
  };

  beforeAll(async () => {
    chain = await startHardhatNode();
    priced = await startPricedServers(chain, scratch.dir);
    ({ provider, urls, efed, onChain } = priced);
    token = EFedToken__factory.connect(priced.contracts.token!, provider);
    broker = TicketBroker__factory.connect(priced.contracts.ticketBroker!, provider);
    serverBalances = await runPricedServers(priced, children, walletFile);
  }, 300_000);

  afterAll(async () => {
    await Promise.all(children.map((c) => stopProcess(c)));
    provider?.destroy();
    await chain?.stop();
    scratch.cleanup();
  });

  it("refuses a client that binds tickets and stops paying at its next step with PaymentRequired", async () => {
    const conn = await ShardConnection.connect(urls[0]!);
    const ledger = TicketLedger.open(join(scratch.dir, "direct.sqlite"));
    try {
      // another client (gas from the registrar, a token from the CLI client), funded directly: its tickets are not the CLI client's
      const client = new Wallet(hexlify(randomBytes(32)), provider);
      await (await new Wallet(KEYS.registrar, provider).sendTransaction({ to: client.address, value: parseEther("1") })).wait();
      await (await token.connect(new Wallet(KEYS.client, provider)).transfer(client.address, parseEther("1"))).wait();
      await (await token.connect(client).approve(await broker.getAddress(), parseEther("1"))).wait();
      await (await broker.connect(client).fund(parseEther("1"), 0n)).wait();
      const payer = new TicketPayer({ key: client.signingKey, domain: ticketDomain(31337n, await broker.getAddress()), ledger, targetFaceValueWei: 1n });
      const sessionId = keccak256(toUtf8Bytes("stops paying"));
      await conn.openSession(sessionId, 16);
      const bound = await conn.bindTickets(payer.bindMessage(0, conn.info.server, sessionId, conn.info.challenge));
      expect([bound.sessionId, bound.owed, bound.covered]).toEqual([sessionId, 0n, 0n]);
      payer.accepted(conn.info.server, bound);
      const hidden = conn.info.hiddenSize;
      const step = (n: bigint, position: number, rows: number) =>
        conn.step({ sessionId, step: n, position, outputEncoding: "fp32", input: encodeActivations(new Float32Array(rows * hidden).fill(0.1), rows, hidden, "fp32"), route: [] });
      await step(0n, 0, 2); // on credit
      const refused = await step(1n, 2, 1).then(
        () => undefined,
        (e: unknown) => e as { code: string; message: string; details: { payment: unknown } },
      );
      expect(refused?.code).toBe(`SERVER_${ErrorCode.PaymentRequired}`);
      expect(refused?.details.payment).toEqual({ channelId: ticketAccountId(client.address), owed: 2n * PRICE, covered: 0n });
      expect(refused?.message).toContain(`step 1 of session ${sessionId} needs payment first: ${2n * PRICE} owed, tickets cover 0`);
      // paid, the same step runs
      const paid = await conn.payTicket(payer.payStep(0, conn.info.server, sessionId, 2n * PRICE));
      expect([paid.owed, paid.covered]).toEqual([2n * PRICE, 2n * PRICE]);
      await step(1n, 2, 1);
    } finally {
      conn.close();
      ledger.close();
    }
  }, 120_000);
  it("rate-limits BindTickets per connection like BindChannel, and refuses a binding signed by another key", async () => {
    const conn = await ShardConnection.connect(urls[1]!);
    const ledger = TicketLedger.open(join(scratch.dir, "flood.sqlite"));
    try {
      const sessionId = keccak256(toUtf8Bytes("flood"));
      await conn.openSession(sessionId, 16);
      // bindings for the CLI client's deposit, signed by a stranger's key: each is refused, and past the burst not even read
      const stranger = new TicketPayer({ key: new Wallet(hexlify(randomBytes(32))).signingKey, domain: ticketDomain(31337n, await broker.getAddress()), ledger, targetFaceValueWei: 1n });
      const forged = { ...stranger.bindMessage(0, conn.info.server, sessionId, conn.info.challenge), sender: address("client") };
      const refusals = await Promise.all(
        Array.from({ length: 40 }, () => conn.bindTickets(forged).then(() => undefined, (e: unknown) => e as { code: string; message: string })),
      );
      const rateLimited = refusals.filter((r) => r?.code === `SERVER_${ErrorCode.RateLimited}`);
      const forbidden = refusals.filter((r) => r?.code === `SERVER_${ErrorCode.Forbidden}`);
      expect(forbidden.length + rateLimited.length).toBe(40);
      expect(forbidden.length).toBeLessThan(40); // the burst is 32, refilled at 10 per second
      expect(rateLimited[0]?.message).toContain("at most 10 channel bindings per second per connection (burst 32)");
      expect(forbidden[0]?.message).toMatch(new RegExp(`the binding of session ${sessionId} to ${address("client")}'s ticket deposit is signed by 0x[0-9a-fA-F]{40}`));
    } finally {
      conn.close();
      ledger.close();
    }
  }, 120_000);

  it("efed wallet fund, a forwarded and a relayed efed generate --pay tickets (each server redeems exactly price × tokens), then unlock and withdraw", async () => {
    const funded = await efed("wallet", "fund", "--wallet", walletFile, ...onChain(), "--amount", "5", "--reserve", "1");
    expect([funded.code, funded.stdout.trim()]).toEqual([0, "ticket deposit: 5.0 EFED, reserve 1.0 EFED"]);
    const balance = JSON.parse((await efed("wallet", "balance", "--wallet", walletFile, ...onChain(), "--json")).stdout) as { tokens: string; tickets: Record<string, string> };
    expect([balance.tokens, balance.tickets.deposit, balance.tickets.reserve, balance.tickets.withdrawableAt]).toEqual([
      parseEther("9993").toString(), parseEther("5").toString(), parseEther("1").toString(), "0",
    ]);

    const perGeneration = `cost: ${formatEther(10n * PRICE)} EFED\n  ${address("server1")}: ${formatEther(5n * PRICE)} EFED\n  ${address("server2")}: ${formatEther(5n * PRICE)} EFED`;
    for (const relay of [[], ["--no-forward"]]) {
      if (relay.length > 0) {
        // the relayed generation's servers give 2 steps of credit: a ticket for the first 2 steps, the last one's at close
        for (const child of children.splice(0)) await stopProcess(child);
        await runPricedServers(priced, children, walletFile, ["--credit-steps", "2"]);
      }
      const gen = await efed("generate", "--model", SHIPPED_MODEL, "--ids", "1,2,3", "--max-tokens", "3", "--route", urls.join(","), "--wallet", walletFile, ...onChain(),
        "--pay", "tickets", "--ticket-face-value", "0.000000000000000001", ...relay);
      expect([gen.code, gen.stderr.includes(perGeneration)]).toEqual([0, true]); // 3 + 1 + 1 tokens on each server
    }
    // a generation whose first step would cost more than --max-cost-per-query is refused before anything is sent or paid
    const limited = await efed("generate", "--model", SHIPPED_MODEL, "--ids", "1,2,3", "--max-tokens", "3", "--route", urls.join(","), "--wallet", walletFile, ...onChain(),
      "--pay", "tickets", "--ticket-face-value", "0.000000000000000001", "--max-cost-per-query", formatEther(5n * PRICE));
    expect([limited.code, limited.stderr.includes(`the next step costs ${formatEther(6n * PRICE)} EFED: the query would cost ${formatEther(6n * PRICE)}, over its limit of ${formatEther(5n * PRICE)}`)]).toEqual([1, true]);
    for (const child of children) await stopProcess(child); // every winner is redeemed at once, pending ones on shutdown
    expect(children.map((c) => c.exitCode)).toEqual([0, 0]);
    for (const [i, { who }] of SERVERS.entries()) {
      expect(await redeemedFor(who)).toBe(10n * PRICE); // two generations of 5 tokens each
      // server1 was also paid the stranger's 2 tokens (the first test)
      const earned = i === 0 ? 12n * PRICE : 10n * PRICE;
      expect((await token.balanceOf(address(who))) - serverBalances[i]!).toBe(earned - (earned * FEE_BPS) / 10_000n);
    }
    expect((await broker.senderInfo(address("client"))).deposit).toBe(parseEther("5") - 20n * PRICE);

    // leaving: unlock, a withdrawal before the unlock period is refused by name, after it everything comes back
    const unlocked = await efed("wallet", "unlock", "--wallet", walletFile, ...onChain(), "--json");
    const withdrawableAt = BigInt((JSON.parse(unlocked.stdout) as { withdrawableAt: string }).withdrawableAt);
    expect([unlocked.code, withdrawableAt > 0n]).toEqual([0, true]);
    const early = await efed("wallet", "withdraw", "--wallet", walletFile, ...onChain());
    expect([early.code === 0, early.stderr.includes("TicketUnlockNotReady")]).toEqual([false, true]);
    await provider.send("evm_increaseTime", [86_400]); // the devnet unlock period: a day
    await provider.send("evm_mine", []);
    const back = parseEther("6") - 20n * PRICE;
    const withdrawn = await efed("wallet", "withdraw", "--wallet", walletFile, ...onChain());
    expect([withdrawn.code, withdrawn.stdout.trim()]).toEqual([0, `withdrew ${formatEther(back)} EFED from the ticket deposit`]);
    expect(await token.balanceOf(address("client"))).toBe(parseEther("9993") + back);
  }, 240_000);

});
