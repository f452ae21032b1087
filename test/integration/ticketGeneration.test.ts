import { execFile, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { JsonRpcProvider, Wallet, formatEther, hexlify, keccak256, parseEther, randomBytes, toUtf8Bytes } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TicketLedger } from "../../client/payment/ticketLedger.js";
import { TicketPayer } from "../../client/payment/ticketPayer.js";
import { ShardConnection } from "../../client/shardClient.js";
import { encodeActivations } from "../../protocol/activations.js";
import { ticketAccountId, ticketDomain } from "../../protocol/tickets.js";
import { ErrorCode } from "../../protocol/wire.js";
import { EFedToken__factory, TicketBroker__factory, type EFedToken, type TicketBroker } from "../../types/ethers-contracts/index.js";
import { scratchDir } from "../engine/helpers.js";
import { DEV_KEYS } from "../support/devKeys.js";
import { EFED_BIN, spawnEfedServer, stopProcess } from "../support/efedProcess.js";
import { freePort, startHardhatNode, type LocalChain } from "../support/hardhatNode.js";

/**
 * Tickets end to end as a user runs them: two priced `efed server`s on a deployment with a
 * TicketBroker, a client that funds its ticket deposit with `efed wallet fund` and pays a forwarded
 * and a relayed `efed generate --pay tickets` with certain tickets (a face value target of one base
 * unit: probability 1), so each server's redemptions equal price × tokens exactly; a client that
 * stops paying is refused with PaymentRequired at its next step.
 */
const run = promisify(execFile);
const root = new URL("../..", import.meta.url).pathname;
const MODEL = join(root, "models/kjv-llama-6m");
const PRICE = parseEther("0.001");
const FEE_BPS = 500n; // the devnet fee
const KEYS = { registrar: DEV_KEYS[0], server1: DEV_KEYS[1], server2: DEV_KEYS[2], client: DEV_KEYS[3] } as const;
type Who = keyof typeof KEYS;
const address = (who: Who): string => new Wallet(KEYS[who]).address;
const SERVERS = [
  { who: "server1", layers: "0:4" },
  { who: "server2", layers: "4:8" },
] as const;

describe("a generation paid with tickets over two priced servers, on a Hardhat node", () => {
  const scratch = scratchDir();
  const walletFile = join(scratch.dir, "wallet.json");
  const children: ChildProcess[] = [];
  let chain: LocalChain;
  let provider: JsonRpcProvider;
  let deployment: string;
  let token: EFedToken;
  let broker: TicketBroker;
  const urls: string[] = [];
  const serverBalances: bigint[] = [];

  const dataDir = (who: Who): string => join(scratch.dir, who);
  const efed = (...args: string[]) =>
    run(process.execPath, [EFED_BIN, ...args], { env: { ...process.env, EFED_WALLET_PASSWORD: "pw", EFED_WALLET_IMPORT_KEY: KEYS.client } }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
  const onChain = (): string[] => ["--rpc", chain.url, "--deployment", deployment];
  /** What `who` was paid by the broker for the client's tickets (to it plus the fee), from its events. */
  const redeemedFor = async (who: Who): Promise<bigint> => {
    const events = await broker.queryFilter(broker.filters.WinningTicketRedeemed(undefined, address("client"), address(who)));
    return events.reduce((sum, e) => sum + e.args.paidToRecipient + e.args.fee, 0n);
  };

  beforeAll(async () => {
    chain = await startHardhatNode();
    const out = join(scratch.dir, "deployments");
    const holders = (["server1", "server2", "client"] as const).map(address).join(",");
    await run(process.execPath, ["--import", "tsx", join(root, "scripts/deploy.ts"), "--rpc", chain.url, "--out-dir", out, "--mint-to", holders, "--mint", "10000"], { cwd: root });
    deployment = join(out, "31337.json");
    const contracts = (JSON.parse(readFileSync(deployment, "utf8")) as { contracts: Record<string, string> }).contracts;
    provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true, cacheTimeout: -1 });
    token = EFedToken__factory.connect(contracts.token!, provider);
    broker = TicketBroker__factory.connect(contracts.ticketBroker!, provider);
    for (const who of Object.keys(KEYS) as Who[]) {
      mkdirSync(dataDir(who), { recursive: true });
      writeFileSync(join(dataDir(who), "efed-server.key"), `${KEYS[who]}\n`, { mode: 0o600 });
    }
    const model = await efed("model", "register", MODEL, ...onChain(), "--data-dir", dataDir("registrar"));
    expect(model.stderr).toBe("");
    for (const { who, layers } of SERVERS) {
      const url = `ws://127.0.0.1:${await freePort()}`;
      const registered = await efed("operator", "register-server", "--model", MODEL, "--layers", layers, "--endpoint", url, "--price", "0.001", "--stake", "1400", ...onChain(), "--data-dir", dataDir(who));
      expect([registered.code, registered.stderr]).toEqual([0, ""]);
      urls.push(url);
    }
    await provider.send("evm_increaseTime", [601]); // past the devnet probation
    await provider.send("evm_mine", []);
    for (const [i, { who, layers }] of SERVERS.entries()) {
      serverBalances.push(await token.balanceOf(address(who)));
      await spawnEfedServer(
        ["--model", MODEL, "--layers", layers, "--port", new URL(urls[i]!).port, ...onChain(), "--key", join(dataDir(who), "efed-server.key"), "--price", "0.001",
          "--forward-private", "--store", join(dataDir(who), "store.sqlite")],
        children,
      );
    }
    const imported = await efed("wallet", "import", "--wallet", walletFile, "--kdf-cost", "1024");
    expect(imported.stdout).toContain(address("client"));
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
  it("efed wallet fund, then a forwarded and a relayed efed generate --pay tickets: each server redeems exactly price × tokens", async () => {
    const funded = await efed("wallet", "fund", "--wallet", walletFile, ...onChain(), "--amount", "5", "--reserve", "1");
    expect([funded.code, funded.stdout.trim()]).toEqual([0, "ticket deposit: 5.0 EFED, reserve 1.0 EFED"]);
    const balance = JSON.parse((await efed("wallet", "balance", "--wallet", walletFile, ...onChain(), "--json")).stdout) as { tokens: string; tickets: Record<string, string> };
    expect([balance.tokens, balance.tickets.deposit, balance.tickets.reserve, balance.tickets.withdrawableAt]).toEqual([
      parseEther("9993").toString(), parseEther("5").toString(), parseEther("1").toString(), "0",
    ]);

    const perGeneration = `cost: ${formatEther(10n * PRICE)} EFED\n  ${address("server1")}: ${formatEther(5n * PRICE)} EFED\n  ${address("server2")}: ${formatEther(5n * PRICE)} EFED`;
    for (const relay of [[], ["--no-forward"]]) {
      const gen = await efed("generate", "--model", MODEL, "--ids", "1,2,3", "--max-tokens", "3", "--route", urls.join(","), "--wallet", walletFile, ...onChain(),
        "--pay", "tickets", "--ticket-face-value", "0.000000000000000001", ...relay);
      expect([gen.code, gen.stderr.includes(perGeneration)]).toEqual([0, true]); // 3 + 1 + 1 tokens on each server
    }
    for (const child of children) await stopProcess(child); // every winner is redeemed at once, pending ones on shutdown
    expect(children.map((c) => c.exitCode)).toEqual([0, 0]);
    for (const [i, { who }] of SERVERS.entries()) {
      expect(await redeemedFor(who)).toBe(10n * PRICE); // two generations of 5 tokens each
      // server1 was also paid the stranger's 2 tokens (the first test)
      const earned = i === 0 ? 12n * PRICE : 10n * PRICE;
      expect((await token.balanceOf(address(who))) - serverBalances[i]!).toBe(earned - (earned * FEE_BPS) / 10_000n);
    }
    expect((await broker.senderInfo(address("client"))).deposit).toBe(parseEther("5") - 20n * PRICE);
  }, 240_000);

});
