import { execFile, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { JsonRpcProvider, NonceManager, Wallet, formatEther, hexlify, parseEther, randomBytes, type Signer, type TypedDataDomain } from "ethers";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildManifest, writeManifest } from "../../engine/model/manifest.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { tinyConfig, writeRandomModel } from "../../engine/model/randomModel.js";
import { Head } from "../../engine/runtime/head.js";
import { Shard } from "../../engine/runtime/shard.js";
import { encodeActivations } from "../../protocol/activations.js";
import { voucherDomain } from "../../protocol/eip712.js";
import { signBinding } from "../../protocol/payment.js";
import { signVoucherSync } from "../../protocol/voucher.js";
import { ErrorCode, type ChannelBound } from "../../protocol/wire.js";
import { FailoverPipeline, type FailoverEvent } from "../../client/failover.js";
import { generate } from "../../client/generate.js";
import { LocalPipeline } from "../../client/localPipeline.js";
import { Payer } from "../../client/payment/payer.js";
import { PaymentQuery, type RoutePayment } from "../../client/payment/routePayment.js";
import { RemotePipeline } from "../../client/remotePipeline.js";
import { CandidatePool } from "../../client/route/candidatePool.js";
import { ShardConnection } from "../../client/shardClient.js";
import { Ledger } from "../../client/wallet/ledger.js";
import { readClientDeployment } from "../../client/route/deploymentFile.js";
import { closeChannel, connectWalletChain, disconnect, type WalletChain } from "../../client/wallet/walletChain.js";
import { Redeemer, channelReader } from "../../node/chain/redeemer.js";
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from "../../node/server/limits.js";
import { PaymentGate, type PaymentGateOptions } from "../../node/server/paymentGate.js";
import { ShardServer } from "../../node/server/shardServer.js";
import { ActivationStore } from "../../node/store/activationStore.js";
import { VoucherStore } from "../../node/store/voucherStore.js";
import { EFedToken__factory, ModelRegistry__factory, PaymentChannels__factory, Staking__factory, type PaymentChannels } from "../../types/ethers-contracts/index.js";
import { scratchDir } from "../engine/helpers.js";
import { startHardhatNode, type LocalChain } from "../support/hardhatNode.js";
import { beforeEachStep } from "../support/stepHook.js";
import { EFED_BIN, spawnEfedServer, stopProcess } from "../support/efedProcess.js";

const run = promisify(execFile);
const root = new URL("../..", import.meta.url).pathname;
const PRICE = parseEther("0.001");
const FEE_BPS = 500n; // the devnet fee
const NEVER = parseEther("1000000"); // a redemption threshold never reached: only closes and shutdown redeem
const scratch = scratchDir();
const modelDir = join(scratch.dir, "tiny");
const deploymentFile = join(scratch.dir, "31337.json");
const keyA = new Wallet(hexlify(randomBytes(32)));
const keyB = new Wallet(hexlify(randomBytes(32)));
const clientKey = new Wallet(hexlify(randomBytes(32)));
const cliKey = new Wallet(hexlify(randomBytes(32)));

let chain: LocalChain;
let provider: JsonRpcProvider;
let admin: Signer;
let contracts: Record<string, string>;
let variantId: string;
let model: ModelDirectory;
let head: Head;
let client: WalletChain;
let ledger: Ledger;

interface PricedServer {
  server: ShardServer;
  gate: PaymentGate;
  redeemer: Redeemer;
  channels: PaymentChannels;
  /** The vouchers it holds. */
  vouchers: VoucherStore;
  /** Stops serving; `redeem`: as on shutdown (everything held is redeemed), else as a crash (nothing is). */
  stop(redeem: boolean): Promise<void>;
}
const running = new Set<PricedServer>();

/** A priced server in this process, paid through channels and redeeming with `key`; its stores live at `storePath`. */
async function startPricedServer(
  key: Wallet,
  first: number,
  last: number,
  storePath: string,
  pollMs = 100,
  limits: Partial<ServerLimits> = {},
  gateOptions: Pick<PaymentGateOptions, "creditSteps" | "onVoucher"> = {},
): Promise<PricedServer> {
  const shard = await Shard.load(model, first, last);
  const store = ActivationStore.open(storePath, { retentionMs: 3_600_000, maxBytes: 1 << 30 });
  const vouchers = VoucherStore.open(storePath);
  const channels = PaymentChannels__factory.connect(contracts.channels!, new NonceManager(key.connect(provider)));
  const gate = new PaymentGate({ pricePerToken: PRICE, server: key.address, voucherDomain: voucherDomain(31337n, contracts.channels!), store: vouchers, readChannel: channelReader(channels), ...gateOptions });
  const redeemer = new Redeemer({ channels, store: vouchers, thresholdWei: NEVER, pollMs, onCloseStarted: (id, at) => gate.closing(id, at), logger: pino({ level: "silent" }) });
  const server = await ShardServer.start({
    shard,
    variantId,
    signingKey: key.signingKey,
    address: key.address,
    chainId: 31337n,
    commitments: contracts.commitments!,
    pricePerToken: PRICE,
    limits: { ...DEFAULT_SERVER_LIMITS, ...limits },
    forwarding: { allowPrivateAddresses: true },
    store,
    payments: gate,
  });
  redeemer.start();
  const p: PricedServer = {
    server,
    gate,
    redeemer,
    channels,
    vouchers,
    stop: async (redeem) => {
      running.delete(p);
      await server.stop();
      await (redeem ? redeemer.stop() : redeemer.pause());
      vouchers.close();
      store.close();
      await shard.release();
    },
  };
  running.add(p);
  return p;
}

let a: PricedServer;
let b: PricedServer;

/** Funds `key` (ETH and tokens), stakes and registers it for layers first:last at `url`, at PRICE. */
async function register(key: Wallet, first: number, last: number, url: string): Promise<void> {
  const stake = parseEther("1200"); // devnet: 1000 base + 100 per layer
  await send(() => admin.sendTransaction({ to: key.address, value: parseEther("10") }));
  await send(() => EFedToken__factory.connect(contracts.token!, admin).mint(key.address, stake));
  const signer = new NonceManager(key.connect(provider));
  await send(() => EFedToken__factory.connect(contracts.token!, signer).approve(contracts.staking!, stake));
  const staking = Staking__factory.connect(contracts.staking!, signer);
  await send(() => staking.deposit(stake));
  await send(() => staking.registerServer(variantId, first, last, url, PRICE));
}

async function send(tx: () => Promise<{ wait(): Promise<unknown> }>): Promise<void> {
  await (await tx()).wait();
}

beforeAll(async () => {
  writeRandomModel(modelDir, tinyConfig(), { seed: 5, dtype: "F32", std: 0.15 });
  model = ModelDirectory.open(modelDir);
  variantId = writeManifest(modelDir, buildManifest(model));
  head = await Head.load(model);
  chain = await startHardhatNode();
  provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true });
  admin = new NonceManager(await provider.getSigner(0));
  const holders = [keyA, keyB, clientKey, cliKey].map((k) => k.address).join(",");
  await run(process.execPath, ["--import", "tsx", join(root, "scripts/deploy.ts"), "--rpc", chain.url, "--out-dir", scratch.dir, "--mint-to", holders, "--mint", "10000"], { cwd: root });
  contracts = (JSON.parse(readFileSync(deploymentFile, "utf8")) as { contracts: Record<string, string> }).contracts;
  for (const k of [keyA, keyB, clientKey, cliKey]) await send(() => admin.sendTransaction({ to: k.address, value: parseEther("10") }));
  await send(() => ModelRegistry__factory.connect(contracts.registry!, admin).registerVariant(variantId, 4, "file://tiny"));
  a = await startPricedServer(keyA, 0, 2, join(scratch.dir, "a.sqlite"));
  b = await startPricedServer(keyB, 2, 4, join(scratch.dir, "b.sqlite"));
  for (const [k, s, first, last] of [[keyA, a, 0, 2], [keyB, b, 2, 4]] as const) {
    const signer = new NonceManager(k.connect(provider));
    const stake = parseEther("1200"); // devnet: 1000 base + 100 per layer
    await send(() => EFedToken__factory.connect(contracts.token!, signer).approve(contracts.staking!, stake));
    const staking = Staking__factory.connect(contracts.staking!, signer);
    await send(() => staking.deposit(stake));
    await send(() => staking.registerServer(variantId, first, last, s.server.url, PRICE));
  }
  await provider.send("evm_increaseTime", [601]); // past the devnet probation
  await provider.send("evm_mine", []);
  client = await connectWalletChain(clientKey, chain.url, readClientDeployment(deploymentFile));
  ledger = Ledger.open(join(scratch.dir, "client.ledger.sqlite"));
}, 180_000);

afterAll(async () => {
  for (const s of [...running]) await s.stop(false);
  ledger?.close();
  if (client !== undefined) disconnect(client);
  provider?.destroy();
  await head?.release();
  model?.close();
  await chain?.stop();
  scratch.cleanup();
});

const channelTo = (server: string): string => ledger.list(31337n, contracts.channels!).find((c) => c.server === server)!.channelId;

/** Opens a session on `conn` (a connection to A) and binds it to the client's channel to A. */
async function bindToA(conn: ShardConnection): Promise<{ sessionId: string; channelId: string; domain: TypedDataDomain; bound: ChannelBound }> {
  const sessionId = hexlify(randomBytes(32));
  const channelId = channelTo(keyA.address);
  const domain = voucherDomain(31337n, contracts.channels!);
  await conn.openSession(sessionId, 16);
  const bound = await conn.bindChannel(sessionId, channelId, signBinding(clientKey.signingKey, domain, { channelId, sessionId, server: keyA.address, challenge: conn.info.challenge }));
  return { sessionId, channelId, domain, bound };
}

/** A generation of `maxTokens` after a 3-token prompt over both servers, paid by a new payer (one query). */
async function paidGeneration(forward: boolean, maxTokens: number): Promise<Payer> {
  const payer = new Payer({ chain: client, ledger, channelTokens: 1000 });
  const pipeline = await RemotePipeline.connect([a.server.url, b.server.url], 4, { forward, payment: payer });
  try {
    await generate(head, pipeline, [1, 2, 3], { maxTokens, temperature: 0 });
  } finally {
    pipeline.close();
  }
  return payer;
}

describe("paying per token", () => {
  it("pays two priced servers exactly price × tokens, forwarded and relayed, and each redeems exactly that", async () => {
    const balanceBefore = await Promise.all([keyA, keyB].map((k) => EFedToken__factory.connect(contracts.token!, provider).balanceOf(k.address)));
    const forwarded = await paidGeneration(true, 4); // a 3-token prefill and 3 decode steps: 6 tokens per server
    const relayed = await paidGeneration(false, 4);
    for (const payer of [forwarded, relayed]) {
      expect(payer.total).toBe(2n * 6n * PRICE);
      expect([...payer.spent]).toEqual([[keyA.address, 6n * PRICE], [keyB.address, 6n * PRICE]]);
    }
    // one channel per server, reused by the second query, deposit for 1000 tokens
    const mine = ledger.list(31337n, contracts.channels!);
    expect(mine.map((c) => [c.server, c.deposit, c.cumulative, c.state])).toEqual([
      [keyA.address, 1000n * PRICE, 12n * PRICE, "open"],
      [keyB.address, 1000n * PRICE, 12n * PRICE, "open"],
    ]);
    for (const [i, s] of [a, b].entries()) {
      expect(await s.redeemer.pass(true)).toBe(1);
      const c = await s.channels.channel(mine[i]!.channelId);
      expect(c.paid).toBe(12n * PRICE);
      const fee = (12n * PRICE * FEE_BPS) / 10_000n;
      const balance = await EFedToken__factory.connect(contracts.token!, provider).balanceOf([keyA, keyB][i]!.address);
      expect(balance - balanceBefore[i]!).toBe(12n * PRICE - fee);
    }
  }, 120_000);

  it("refuses a client that stops paying at its next step with PaymentRequired, keeps its session, and serves it once paid", async () => {
    const conn = await ShardConnection.connect(a.server.url);
    try {
      const { sessionId, channelId, domain, bound } = await bindToA(conn);
      expect([bound.deposit, bound.owed, bound.covered]).toEqual([1000n * PRICE, 12n * PRICE, 12n * PRICE]);
      const hidden = conn.info.hiddenSize;
      const step = (n: bigint, position: number, rows: number) =>
        conn.step({ sessionId, step: n, position, outputEncoding: "fp32", input: encodeActivations(new Float32Array(rows * hidden).fill(0.1), rows, hidden, "fp32"), route: [] });
      await step(0n, 0, 2); // on credit
      const refused = await step(1n, 2, 1).then(
        () => undefined,
        (e: unknown) => e as { code: string; message: string; details: { payment: unknown } },
      );
      expect(refused?.code).toBe(`SERVER_${ErrorCode.PaymentRequired}`);
      expect(refused?.details.payment).toEqual({ channelId, owed: 14n * PRICE, covered: 12n * PRICE });
      expect(refused?.message).toContain(`step 1 of session ${sessionId} needs payment first`);
      expect(a.server.sessionCount).toBe(1); // the session waits for its payment
      const v = ledger.signNext(channelId, 2n * PRICE, clientKey.signingKey, domain, { day: "2026-12-01" });
      expect(await conn.pay(channelId, v.cumulativeAmount, v.signature)).toMatchObject({ owed: 14n * PRICE, covered: 14n * PRICE });
      await step(1n, 2, 1);
      const replay = await conn.pay(channelId, v.cumulativeAmount, v.signature).then(
        () => new Error("accepted"),
        (e: unknown) => e as Error,
      );
      expect(replay.message).toContain(`voucher for ${14n * PRICE} on channel ${channelId} does not exceed the ${14n * PRICE} already accepted: replayed or stale`);
      const last = ledger.signNext(channelId, PRICE, clientKey.signingKey, domain, { day: "2026-12-01" });
      await conn.pay(channelId, last.cumulativeAmount, last.signature);
    } finally {
      conn.close();
    }
  }, 60_000);

  it("redeems everything after a restart in the middle of a session", async () => {
    const channelId = channelTo(keyA.address);
    expect((await a.channels.channel(channelId)).paid).toBe(12n * PRICE); // the last 3 tokens are not redeemed yet
    await a.stop(false); // a crash: nothing redeemed on the way out
    a = await startPricedServer(keyA, 0, 2, join(scratch.dir, "a.sqlite"));
    expect(await a.redeemer.stop()).toBe(1);
    expect((await a.channels.channel(channelId)).paid).toBe(15n * PRICE);
    expect(ledger.get(channelId)!.cumulative).toBe(15n * PRICE);
    a.redeemer.start();
  }, 60_000);

  it("redeems a channel whose client starts a close before the close can finish", async () => {
    const payer = await paidGeneration(true, 2); // 3 + 1 tokens on each server
    expect(payer.total).toBe(2n * 4n * PRICE);
    const channelId = channelTo(keyB.address);
    expect((await b.channels.channel(channelId)).paid).toBe(12n * PRICE);
    expect(await closeChannel(client, ledger, channelId)).toMatchObject({ state: "closing" });
    let paid = 0n;
    for (let i = 0; i < 150 && paid !== 16n * PRICE; i++) {
      await new Promise((r) => setTimeout(r, 100));
      paid = (await b.channels.channel(channelId)).paid;
    }
    expect(paid).toBe(16n * PRICE);
    const onChain = await b.channels.channel(channelId);
    expect(onChain.closed).toBe(false);
    const early = await client.channels.finishClose.staticCall(channelId).then(
      () => ({ data: "mined" }),
      (e: unknown) => e as { data: string },
    );
    expect(early.data.slice(0, 10)).toBe(client.channels.interface.getError("ChannelCloseNotReady")!.selector);
    expect(ledger.get(channelId)!.state).toBe("closing");
  }, 60_000);

  it("refuses a forwarded step the second server is not paid for, naming that server's channel and what it is owed", async () => {
    const payer = new Payer({ chain: client, ledger, channelTokens: 1000 });
    const domain = voucherDomain(31337n, contracts.channels!);
    let channelB = "";
    const paysOnlyTheFirst: RoutePayment = {
      openSequence: async (connections, ids, maxLength) => {
        await payer.openSequence(connections, ids, maxLength); // binds both sessions (a new channel to B: the old one is closing)
        channelB = ledger.findOpen(31337n, contracts.channels!, keyB.address, 0n)!.channelId;
        const channelA = channelTo(keyA.address);
        return {
          beforeStep: () => undefined,
          afterStep: async (tokens) => {
            const v = ledger.signNext(channelA, BigInt(tokens) * PRICE, clientKey.signingKey, domain, { day: "2026-12-01" });
            await connections[0]!.pay(channelA, v.cumulativeAmount, v.signature);
          },
          settle: async () => undefined,
        };
      },
    };
    const pipeline = await RemotePipeline.connect([a.server.url, b.server.url], 4, { forward: true, payment: paysOnlyTheFirst });
    const failed = await generate(head, pipeline, [1, 2, 3], { maxTokens: 3, temperature: 0 })
      .then(
        () => undefined,
        (e: unknown) => (e as { cause: { code: string; message: string; details: { payment: unknown } } }).cause,
      )
      .finally(() => pipeline.close());
    expect(failed?.code).toBe(`SERVER_${ErrorCode.PaymentRequired}`);
    expect(failed?.message).toContain(`server 2 of 2 on the route (${b.server.url}) failed step 1`);
    expect(failed?.details.payment).toEqual({ channelId: channelB, owed: 3n * PRICE, covered: 0n });
  }, 60_000);
  it("tells what each sequence's sessions cost, which the gateway answers in x-efed-cost", async () => {
    const payer = new Payer({ chain: client, ledger, channelTokens: 1000 });
    const pipeline = await RemotePipeline.connect([a.server.url, b.server.url], 4, { payment: payer });
    try {
      const first = await pipeline.openSequence(16);
      const second = await pipeline.openSequence(16);
      await first.compute(head.embed([1, 2, 3]));
      await second.compute(head.embed([4]));
      await second.compute(head.embed([5]));
      expect(payer.costOf(first.sessionIds)).toBe(2n * 3n * PRICE);
      expect(payer.costOf(second.sessionIds)).toBe(2n * 2n * PRICE);
      expect(payer.costOf([...first.sessionIds, ...second.sessionIds])).toBe(2n * 5n * PRICE);
      expect(payer.costOf(["0x" + "00".repeat(32)])).toBe(0n);
      await Promise.all([first.close(), second.close()]);
    } finally {
      pipeline.close();
    }
  }, 60_000);
  it("pays a failover onto a priced spare: the replay as one prefill and each later step, and the spare redeems exactly that", async () => {
    // A (the shared 0:2 server) → B (2:4), a spare C (2:4); B and C are new servers of their own keys
    const keyFailing = new Wallet(hexlify(randomBytes(32)));
    const keySpare = new Wallet(hexlify(randomBytes(32)));
    const failing = await startPricedServer(keyFailing, 2, 4, join(scratch.dir, "failing.sqlite"));
    const spare = await startPricedServer(keySpare, 2, 4, join(scratch.dir, "spare.sqlite"));
    try {
      await register(keyFailing, 2, 4, failing.server.url);
      await register(keySpare, 2, 4, spare.server.url);
      await provider.send("evm_increaseTime", [601]); // past their probation
      await provider.send("evm_mine", []);
      const prompt = [1, 2, 3];
      const options = { maxTokens: 6, temperature: 0 };
      const local = await LocalPipeline.load(model, [2]);
      const expected = await generate(head, local, prompt, options).finally(() => local.release());

      const payer = new Payer({ chain: client, ledger, channelTokens: 1000 });
      const sessionIds: string[] = []; // every sequence's sessions, on both routes (for costOf)
      const queries: (PaymentQuery | undefined)[] = [];
      const payment: RoutePayment = {
        openSequence: (connections, ids, maxLength, query) => {
          sessionIds.push(...ids);
          queries.push(query);
          return payer.openSequence(connections, ids, maxLength, query);
        },
      };
      const pool = new CandidatePool();
      pool.addUnmeasured([a, failing, spare].map((s) => ({ url: s.server.url })));
      const events: FailoverEvent[] = [];
      const failingUrl = failing.server.url; // its url reads port 0 once it stops
      const route = [a.server.url, failingUrl];
      // relayed: A has computed the failed step before the client reaches B, so what A is owed is known
      const failover = await FailoverPipeline.connect(route, 4, pool.replanner({ numLayers: 4 }), { forward: false, payment, onFailover: (e) => events.push(e) });
      // steps: 0 the 3-token prompt, 1..5 one token each; B stops before step 3, once it holds step 2's
      // voucher (a step's payment is acknowledged while the client works on its output)
      const killing = beforeEachStep(failover, async (step) => {
        if (step !== 3) return;
        while (failing.vouchers.get(channelTo(keyFailing.address))?.covered !== 5n * PRICE) await new Promise((resolve) => setTimeout(resolve, 5));
        await failing.stop(false);
      });
      const ids = await generate(head, killing, prompt, options).finally(() => failover.close());
      expect(ids.generatedIds).toEqual(expected.generatedIds);
      expect(events.map((e) => [e.failedUrl, e.route, e.replayedTokens])).toEqual([[failingUrl, [a.server.url, spare.server.url], 6]]);

      // B: steps 0..2 (3 + 1 + 1). C: the replay of steps 0..3 as one prefill (6), then steps 4 and 5 (1 + 1).
      // A: steps 0..2 (5), the failed step 3 it computed before B failed (1, paid as the gap when its new
      // session is bound to the same channel), the replay (6) and steps 4 and 5 (2).
      expect([...payer.spent]).toEqual([
        [keyA.address, 14n * PRICE],
        [keyFailing.address, 5n * PRICE],
        [keySpare.address, 8n * PRICE],
      ]);
      expect(payer.total).toBe(27n * PRICE);
      expect(sessionIds.length).toBe(4);
      expect(payer.costOf(sessionIds)).toBe(payer.total);
      // the failed step A computed counts to A's first session, paid though it was at the second one's binding
      expect(payer.costOf(sessionIds.slice(0, 2))).toBe(2n * 5n * PRICE + 1n * PRICE);
      expect(payer.costOf(sessionIds.slice(2))).toBe(2n * 8n * PRICE);
      // both routes' sequences are one query: a per-query limit counts the whole generation
      expect(queries).toHaveLength(2);
      expect(queries[1]).toBe(queries[0]);
      expect([...queries[0]!.sessions]).toEqual(sessionIds);
      const toSpare = channelTo(keySpare.address);
      expect(ledger.get(toSpare)!.cumulative).toBe(8n * PRICE);

      expect(await spare.redeemer.pass(true)).toBe(1);
      expect((await spare.channels.channel(toSpare)).paid).toBe(8n * PRICE);
    } finally {
      for (const s of [failing, spare]) if (running.has(s)) await s.stop(false);
    }
  }, 120_000);

  it("runs concurrent paid sequences over one channel per server: each progresses on its own credit, and each server redeems exactly price × tokens", async () => {
    const payer = new Payer({ chain: client, ledger, channelTokens: 1000 });
    // the third sequence binds while the first's step is running: that step is no gap to pay
    let firstStepSent: () => void = () => undefined;
    const stepSent = new Promise<void>((resolve) => (firstStepSent = resolve));
    let sequences = 0;
    const payment: RoutePayment = {
      openSequence: async (connections, ids, maxLength) => {
        const inner = await payer.openSequence(connections, ids, maxLength);
        const first = sequences++ === 0;
        return {
          ...inner,
          beforeStep: (tokens) => {
            inner.beforeStep(tokens);
            if (first) firstStepSent();
          },
        };
      },
    };
    // an earlier test left a step owed on B's channel, which a binding pays: settle it, and redeem, so only this test's work counts
    const settling = await RemotePipeline.connect([a.server.url, b.server.url], 4, { payment: new Payer({ chain: client, ledger, channelTokens: 1000 }) });
    await (await settling.openSequence(16)).close();
    settling.close();
    for (const s of [a, b]) await s.redeemer.pass(true);
    const channels = [a, b].map((s, i) => ({ s, channelId: ledger.findOpen(31337n, contracts.channels!, [keyA, keyB][i]!.address, 0n)!.channelId }));
    const signedBefore = channels.map((c) => ledger.get(c.channelId)!.cumulative);
    const paidBefore = await Promise.all(channels.map(async (c) => (await c.s.channels.channel(c.channelId)).paid));
    expect(paidBefore).toEqual(signedBefore);
    const pipeline = await RemotePipeline.connect([a.server.url, b.server.url], 4, { forward: true, payment });
    try {
      const first = await pipeline.openSequence(16);
      const second = await pipeline.openSequence(16);
      const prefill = first.compute(head.embed([1, 2, 3]));
      await stepSent;
      const third = await pipeline.openSequence(16);
      await prefill;
      // every round, all three sequences' steps are at the servers at once (credit per channel refused the later ones)
      await Promise.all([second.compute(head.embed([4, 5])), third.compute(head.embed([6]))]);
      for (let i = 0; i < 3; i++) await Promise.all([first, second, third].map((q, j) => q.compute(head.embed([7 + j]))));
      expect([first, second, third].map((q) => payer.costOf(q.sessionIds))).toEqual([2n * 6n * PRICE, 2n * 5n * PRICE, 2n * 4n * PRICE]);
      expect(payer.total).toBe(2n * 15n * PRICE); // no gap paid at the third binding
      await Promise.all([first, second, third].map((q) => q.close()));
    } finally {
      pipeline.close();
    }
    for (const [i, { s, channelId }] of channels.entries()) {
      expect(ledger.get(channelId)!.cumulative - signedBefore[i]!).toBe(15n * PRICE);
      expect(await s.redeemer.pass(true)).toBe(1);
      expect((await s.channels.channel(channelId)).paid - paidBefore[i]!).toBe(15n * PRICE);
    }
  }, 120_000);

  it("refuses a stranger's flood of channel bindings with RateLimited, forgets ended sessions' bindings, and serves an honest client", async () => {
    const domain = voucherDomain(31337n, contracts.channels!);
    const bindOn = (conn: ShardConnection, key: Wallet, sessionId: string, channelId: string) =>
      conn.bindChannel(sessionId, channelId, signBinding(key.signingKey, domain, { channelId, sessionId, server: conn.info.server, challenge: conn.info.challenge }));
    const keyLimited = new Wallet(hexlify(randomBytes(32)));
    const limited = await startPricedServer(keyLimited, 0, 2, join(scratch.dir, "limited.sqlite"), 100, { bindsPerSecond: 1, bindBurst: 3 });
    const stranger = await ShardConnection.connect(limited.server.url);
    try {
      const sessionId = hexlify(randomBytes(32));
      await stranger.openSession(sessionId, 16);
      const strangerKey = new Wallet(hexlify(randomBytes(32)));
      // each binding costs the server a signature recovery and a chain read: a burst of 3, then 1 per second
      const refusals: { code: string; message: string }[] = [];
      for (let i = 0; i < 5; i++) {
        const channelId = hexlify(randomBytes(32));
        refusals.push(await bindOn(stranger, strangerKey, sessionId, channelId).then(() => ({ code: "bound", message: "" }), (e: { code: string; message: string }) => e));
      }
      expect(refusals.map((r) => r.code)).toEqual([...Array<string>(3).fill(`SERVER_${ErrorCode.PaymentRequired}`), ...Array<string>(2).fill(`SERVER_${ErrorCode.RateLimited}`)]);
      expect(refusals[0]!.message).toMatch(/channel 0x[0-9a-f]{64} does not exist on chain/);
      expect(refusals[4]!.message).toContain("at most 1 channel bindings per second per connection (burst 3)");
      expect(limited.gate.boundSessions).toBe(0);
    } finally {
      stranger.close();
      await limited.stop(false);
    }
    const boundBefore = a.gate.boundSessions;
    // the gate keeps a binding only while its session lives
    const conn = await ShardConnection.connect(a.server.url);
    try {
      const { sessionId: first } = await bindToA(conn);
      await bindToA(conn);
      expect(a.gate.boundSessions).toBe(boundBefore + 2);
      await conn.closeSession(first);
      expect(a.gate.boundSessions).toBe(boundBefore + 1);
    } finally {
      conn.close();
    }
    for (let i = 0; i < 50 && a.gate.boundSessions !== boundBefore; i++) await new Promise((r) => setTimeout(r, 20)); // the server sees the close
    expect(a.gate.boundSessions).toBe(boundBefore);
    const honest = await paidGeneration(true, 2);
    expect(honest.total).toBe(2n * 4n * PRICE);
  }, 60_000);

  it("refuses a voucher signed for another chain, another contract or another channel over the wire, and no funds move", async () => {
    const conn = await ShardConnection.connect(a.server.url);
    try {
      const { sessionId, channelId, domain } = await bindToA(conn);
      await a.redeemer.pass(true); // what earlier tests left is redeemed first
      const before = await a.channels.channel(channelId);
      const amount = ledger.get(channelId)!.cumulative + PRICE;
      const toB = ledger.findOpen(31337n, contracts.channels!, keyB.address, 0n)!.channelId;
      for (const [what, d, signedFor] of [
        ["chain 1", voucherDomain(1n, contracts.channels!), channelId],
        ["the Staking contract", voucherDomain(31337n, contracts.staking!), channelId],
        ["the channel to B", domain, toB],
      ] as const) {
        const signature = signVoucherSync(clientKey.signingKey, d, { channelId: signedFor, cumulativeAmount: amount });
        const refused = await conn.pay(channelId, amount, signature, sessionId).then(
          () => ({ code: "accepted", message: what }),
          (e: { code: string; message: string }) => e,
        );
        expect(refused.code).toBe(`SERVER_${ErrorCode.Forbidden}`);
        expect(refused.message).toMatch(
          new RegExp(`voucher for ${amount} on channel ${channelId} recovers to 0x[0-9a-fA-F]{40}, not the channel's client ${clientKey.address} \\(signed by another key, or for another channel, chain or contract\\)`),
        );
      }
      expect(await a.redeemer.pass(true)).toBe(0); // nothing new to redeem
      const after = await a.channels.channel(channelId);
      expect([after.paid, after.deposit]).toEqual([before.paid, before.deposit]);
    } finally {
      conn.close();
    }
  }, 60_000);

  it("pays servers that give credit once every few steps and what is left at the end, exactly price × tokens", async () => {
    const vouchers = new Map<string, number>();
    const count = (server: string) => () => vouchers.set(server, (vouchers.get(server) ?? 0) + 1);
    /** Restarts both servers, with `creditSteps` (vouchers counted) or as the other tests run them. */
    const restart = async (creditSteps?: number): Promise<void> => {
      await Promise.all([a, b].map((s) => s.stop(false)));
      const options = (k: Wallet) => (creditSteps === undefined ? {} : { creditSteps, onVoucher: count(k.address) });
      [a, b] = await Promise.all([
        startPricedServer(keyA, 0, 2, join(scratch.dir, "a.sqlite"), 100, {}, options(keyA)),
        startPricedServer(keyB, 2, 4, join(scratch.dir, "b.sqlite"), 100, {}, options(keyB)),
      ]);
    };
    await restart(3);
    try {
      // what earlier tests left owed is paid at binding: settle it first, so only this generation counts
      const settling = await RemotePipeline.connect([a.server.url, b.server.url], 4, { payment: new Payer({ chain: client, ledger, channelTokens: 1000 }) });
      await (await settling.openSequence(16)).close();
      settling.close();
      vouchers.clear();
      const channels = [keyA, keyB].map((k) => ledger.findOpen(31337n, contracts.channels!, k.address, 0n)!.channelId);
      const signedBefore = channels.map((id) => ledger.get(id)!.cumulative);
      const payer = new Payer({ chain: client, ledger, channelTokens: 1000 });
      const pipeline = await RemotePipeline.connect([a.server.url, b.server.url], 4, { forward: true, payment: payer });
      expect(pipeline.connections.map((c) => c.info.creditSteps)).toEqual([3, 3]);
      let tokens: number[];
      try {
        // a 3-token prefill and 7 decode steps: 10 tokens, 8 steps per server
        tokens = (await generate(head, pipeline, [1, 2, 3], { maxTokens: 8, temperature: 0 })).generatedIds;
      } finally {
        pipeline.close();
      }
      expect(tokens).toHaveLength(8);
      // after steps 3 and 6, and the last 2 when the sequence closed: 3 vouchers per server, not 8
      expect([...vouchers].sort()).toEqual([[keyA.address, 3], [keyB.address, 3]].sort());
      expect([...payer.spent]).toEqual([[keyA.address, 10n * PRICE], [keyB.address, 10n * PRICE]]);
      expect(channels.map((id, i) => ledger.get(id)!.cumulative - signedBefore[i]!)).toEqual([10n * PRICE, 10n * PRICE]);
      const owed = await Promise.all([a, b].map(async (s, i) => s.vouchers.get(channels[i]!)!));
      expect(owed.map((r) => r.owed - r.covered)).toEqual([0n, 0n]);

      // a query's limit counts what its own sequences cost, paid and unpaid, and not other queries': with
      // one token per step (2 servers: 2 × PRICE a step), two queries each owe two steps (4 × PRICE, together
      // over the limit of 5 × PRICE), and the third step of one is refused
      const limited = new Payer({ chain: client, ledger, channelTokens: 1000, maxPerQueryWei: 5n * PRICE });
      const both = await RemotePipeline.connect([a.server.url, b.server.url], 4, { forward: true, payment: limited });
      const overLimit = `the next step costs ${formatEther(2n * PRICE)} EFED (${formatEther(6n * PRICE)} with the steps not yet paid): the query would cost ${formatEther(6n * PRICE)}, over its limit of ${formatEther(5n * PRICE)}`;
      try {
        const [q1, q2] = [await both.openSequence(16), await both.openSequence(16)];
        for (const token of [1, 2]) {
          await q1.compute(head.embed([token]));
          await q2.compute(head.embed([token]));
        }
        await expect(q1.compute(head.embed([3]))).rejects.toThrow(overLimit);
        await q2.close(); // pays its two steps
        expect([limited.total, limited.costOf(q2.sessionIds)]).toEqual([4n * PRICE, 4n * PRICE]);

        // the sequences of one query (failover opens the next route's in the same query) count together
        const query = new PaymentQuery();
        const [r1, r2] = [await both.openSequence(16, query), await both.openSequence(16, query)];
        await r1.compute(head.embed([1]));
        await r2.compute(head.embed([1]));
        await expect(r2.compute(head.embed([2]))).rejects.toThrow(overLimit);
        expect([...query.sessions]).toEqual([...r1.sessionIds, ...r2.sessionIds]);
      } finally {
        both.close();
      }
    } finally {
      await restart(); // as later tests expect them: credit 1
    }
  }, 120_000);
});

describe("efed wallet and a paid efed generate", () => {
  const walletFile = join(scratch.dir, "cli-wallet.json");
  const efed = (args: string[], password = "pw") =>
    run(process.execPath, [EFED_BIN, ...args], { env: { ...process.env, EFED_WALLET_PASSWORD: password, EFED_WALLET_IMPORT_KEY: cliKey.privateKey } }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
  const chainArgs = ["--wallet", walletFile, "--rpc", "", "--deployment", deploymentFile];
  beforeAll(() => {
    chainArgs[3] = chain.url;
  });

  it("imports a key, pays a generation over both servers, and prints what it cost", async () => {
    expect((await efed(["wallet", "import", "--wallet", walletFile, "--kdf-cost", "1024"])).stdout).toContain(cliKey.address);
    expect((await efed(["wallet", "address", "--wallet", walletFile])).stdout.trim()).toBe(cliKey.address);
    const balance = JSON.parse((await efed(["wallet", "balance", ...chainArgs, "--json"])).stdout) as { tokens: string };
    expect(balance.tokens).toBe(parseEther("10000").toString());
    const gen = await efed(["generate", "--model", modelDir, "--ids", "1,2,3", "--max-tokens", "3", "--route", `${a.server.url},${b.server.url}`, ...chainArgs, "--channel-tokens", "100"]);
    expect(gen.code).toBe(0);
    // 3 + 1 + 1 tokens on each of two servers
    expect(gen.stderr).toContain(`cost: ${formatEther(10n * PRICE)} EFED\n  ${keyA.address}: ${formatEther(5n * PRICE)} EFED\n  ${keyB.address}: ${formatEther(5n * PRICE)} EFED`);
    const listed = JSON.parse((await efed(["wallet", "channels", ...chainArgs, "--json"])).stdout) as { channels: { server: string; cumulative: string; deposit: string }[] };
    expect(listed.channels.map((c) => [c.server, c.cumulative, c.deposit])).toEqual([
      [keyA.address, (5n * PRICE).toString(), (100n * PRICE).toString()],
      [keyB.address, (5n * PRICE).toString(), (100n * PRICE).toString()],
    ]);
    const after = JSON.parse((await efed(["wallet", "balance", ...chainArgs, "--json"])).stdout) as { tokens: string };
    expect(BigInt(after.tokens)).toBe(parseEther("10000") - 200n * PRICE); // the two deposits left the wallet; the rest comes back on close
  }, 120_000);

  it("names a wrong password, a missing keystore, an insufficient balance and a deregistered server, and moves no funds", async () => {
    const wrong = await efed(["wallet", "balance", ...chainArgs], "not it");
    expect([wrong.code, wrong.stderr.trim()]).toEqual([1, `efed: wrong password for the keystore ${walletFile}`]);
    const missing = join(scratch.dir, "nobody.json");
    const none = await efed(["wallet", "balance", "--wallet", missing, "--rpc", chain.url, "--deployment", deploymentFile]);
    expect([none.code, none.stderr.trim()]).toEqual([1, `efed: no keystore at ${missing}: create one with \`efed wallet create --wallet ${missing}\``]);
    const before = await EFedToken__factory.connect(contracts.token!, provider).balanceOf(cliKey.address);
    const tooMuch = await efed(["wallet", "open", ...chainArgs, "--server", keyA.address, "--amount", "1000000"]);
    expect([tooMuch.code, tooMuch.stderr.trim()]).toEqual([1, `efed: ${cliKey.address} has ${formatEther(before)} EFED, the channel's deposit needs 1000000.0`]);
    await send(() => Staking__factory.connect(contracts.staking!, new NonceManager(keyB.connect(provider))).deregister());
    const gone = await efed(["wallet", "open", ...chainArgs, "--server", keyB.address, "--amount", "1"]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain(`${keyB.address} is not an eligible server (not registered or deregistered, in probation, or trusted below the threshold): no channel opened`);
    expect(await EFedToken__factory.connect(contracts.token!, provider).balanceOf(cliKey.address)).toBe(before);
  }, 120_000);
});

describe("efed server with a price on a chain", () => {
  it("refuses unpaid steps, serves a paying client, and redeems on shutdown", async () => {
    const key = new Wallet(hexlify(randomBytes(32)));
    await send(() => admin.sendTransaction({ to: key.address, value: parseEther("10") }));
    await send(() => EFedToken__factory.connect(contracts.token!, admin).mint(key.address, parseEther("2000")));
    writeFileSync(join(scratch.dir, "c.key"), key.privateKey);
    const children: ChildProcess[] = [];
    try {
      const { url } = await spawnEfedServer(
        ["--model", modelDir, "--layers", "0:4", "--rpc", chain.url, "--deployment", deploymentFile, "--key", join(scratch.dir, "c.key"), "--stake", "1400",
          "--price", "0.001", "--store", join(scratch.dir, "c.sqlite"), "--redeem-threshold", "1000", "--redeem-poll-ms", "100"],
        children,
      );
      const stranger = await ShardConnection.connect(url);
      const sessionId = hexlify(randomBytes(32));
      await stranger.openSession(sessionId, 8);
      const hidden = stranger.info.hiddenSize;
      const unpaid = await stranger
        .step({ sessionId, step: 0n, position: 0, outputEncoding: "fp32", input: encodeActivations(new Float32Array(hidden), 1, hidden, "fp32"), route: [] })
        .then(() => undefined, (e: unknown) => e as { code: string; message: string });
      expect(unpaid?.code).toBe(`SERVER_${ErrorCode.PaymentRequired}`);
      expect(unpaid?.message).toContain(`session ${sessionId} has no payment channel: bind one (BindChannel) first; this server charges ${PRICE} per token`);
      stranger.close();

      await provider.send("evm_increaseTime", [601]); // past its probation
      await provider.send("evm_mine", []);
      const payer = new Payer({ chain: client, ledger, channelTokens: 100 });
      const pipeline = await RemotePipeline.connect([url], 4, { payment: payer });
      await generate(head, pipeline, [1, 2, 3], { maxTokens: 3, temperature: 0 }).finally(() => pipeline.close());
      expect(payer.total).toBe(5n * PRICE);
      const channelId = channelTo(key.address);
      expect((await client.channels.channel(channelId)).paid).toBe(0n); // under the threshold: not redeemed while serving
      await stopProcess(children[0]!);
      expect(children[0]!.exitCode).toBe(0);
      expect((await client.channels.channel(channelId)).paid).toBe(5n * PRICE);
    } finally {
      await Promise.all(children.map((c) => stopProcess(c)));
    }
  }, 120_000);
});
