/**
 * npm run bench:client [-- --write] — what finding a route and surviving a failed server cost:
 *
 *   1. Discovery: `discoverRoute` against a Hardhat node with 10 and 100 servers registered for one
 *      variant (all staked, past probation, each a live in-process shard server on 127.0.0.1):
 *      the chain reads (paged `Staking.servers` + θ), the client's own measurement of every
 *      candidate (parallel: a session round trip and a 1-token step each), and both together.
 *   2. Failover: the shipped model on a route of two servers with a spare per span; a server is
 *      killed (its connections drop) every 32 tokens of a 256-token greedy generation, then one hangs
 *      (its layers stop answering; step deadline 1,000 ms). The stall is the failed step's time,
 *      detection, ban, replanning, reconnecting and the one-prefill replay included, against the
 *      median decode step of the same run.
 *
 *   3. Gateway (scripts/bench/lib/gatewayBench.ts): overhead per request against the library in the
 *      same run, and tokens/s of 1, 4 and 16 concurrent streams against one, in process and on a route.
 *
 * Prints the tables; with --write replaces the "Discovery", "Failover" and "Gateway" sections of docs/client.md.
 * Every server and the chain are stopped at the end, also on error.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { JsonRpcProvider, NonceManager, Wallet, hexlify, parseEther, parseUnits, randomBytes, type Signer } from "ethers";
import { FailoverPipeline, type FailoverEvent } from "../../client/failover.js";
import { generate, type LayerPipeline } from "../../client/generate.js";
import { CandidatePool } from "../../client/route/candidatePool.js";
import { discoverRoute } from "../../client/route/discover.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { tinyConfig, writeRandomModel } from "../../engine/model/randomModel.js";
import { Head } from "../../engine/runtime/head.js";
import { Shard } from "../../engine/runtime/shard.js";
import { DEFAULT_SERVER_LIMITS } from "../../node/server/limits.js";
import { ShardServer } from "../../node/server/shardServer.js";
import { ActivationStore } from "../../node/store/activationStore.js";
import { EFedToken__factory, ModelRegistry__factory, Staking__factory, TrustScores__factory } from "../../types/ethers-contracts/index.js";
import { startHardhatNode } from "../../test/support/hardhatNode.js";
import { writeDocSections } from "./lib/docs.js";
import { benchGateway } from "./lib/gatewayBench.js";
import { fmtNum, markdownTable } from "./lib/markdown.js";
import { median } from "./lib/stats.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const docPath = join(root, "docs/client.md");
const work = mkdtempSync(join(tmpdir(), "efed-bench-client-"));
const stops: (() => Promise<void>)[] = [];

/** A live in-process shard server for `shard`'s layers that signs with `wallet`. */
async function serve(shard: Shard, variantId: string, wallet: Wallet, name: string): Promise<ShardServer> {
  const store = ActivationStore.open(join(work, `${name}.sqlite`), { retentionMs: 3_600_000, maxBytes: 1 << 28 });
  const server = await ShardServer.start({
    shard,
    variantId,
    signingKey: wallet.signingKey,
    address: wallet.address,
    chainId: 31337n,
    limits: DEFAULT_SERVER_LIMITS,
    forwarding: { allowPrivateAddresses: true },
    store,
  });
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopped ??= server.stop().then(() => store.close()));
  stops.push(stop);
  (server as ShardServer & { benchStop?: () => Promise<void> }).benchStop = stop;
  return server;
}

const stopServer = (s: ShardServer): Promise<void> => (s as ShardServer & { benchStop: () => Promise<void> }).benchStop();

// ---------------------------------------------------------------- discovery

interface DiscoveryRow {
  servers: number;
  chainMs: number;
  measureMs: number;
  totalMs: number;
  candidates: number;
  routeLength: number;
}

async function benchDiscovery(counts: readonly number[]): Promise<DiscoveryRow[]> {
  const modelDir = join(work, "tiny");
  writeRandomModel(modelDir, tinyConfig(), { seed: 3, dtype: "F16", std: 0.15 });
  const model = ModelDirectory.open(modelDir);
  const ranges = [
    [0, 2],
    [2, 4],
    [0, 4],
  ] as const;
  const shards = await Promise.all(ranges.map(([f, l]) => Shard.load(model, f, l)));
  const chain = await startHardhatNode();
  stops.push(() => chain.stop());
  const provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true });
  stops.push(async () => provider.destroy());
  const admin: Signer = new NonceManager(await provider.getSigner(0));
  const adminAddress = await admin.getAddress();
  await promisify(execFile)(
    process.execPath,
    ["--import", "tsx", join(root, "scripts/deploy.ts"), "--rpc", chain.url, "--out-dir", work, "--mint-to", adminAddress, "--mint", "1000000"],
    { cwd: root },
  );
  const contracts = (JSON.parse(readFileSync(join(work, "31337.json"), "utf8")) as { contracts: Record<string, string> }).contracts;
  const token = EFedToken__factory.connect(contracts.token!, admin);
  const rows: DiscoveryRow[] = [];
  for (const n of counts) {
    const variantId = hexlify(randomBytes(32));
    await (await ModelRegistry__factory.connect(contracts.registry!, admin).registerVariant(variantId, 4, "file://bench")).wait();
    const wallets = Array.from({ length: n }, () => Wallet.createRandom().connect(provider) as unknown as Wallet);
    // funding goes through the admin's nonce in order; each operator then stakes and registers on its own
    for (const w of wallets) {
      await admin.sendTransaction({ to: w.address, value: parseEther("1") });
      await token.transfer(w.address, parseEther("2000"));
    }
    await provider.send("evm_mine", []);
    await Promise.all(
      wallets.map(async (w, i) => {
        const [first, last] = ranges[i % ranges.length]!;
        const server = await serve(shards[i % ranges.length]!, variantId, w, `d${n}-${i}`);
        const signer = new NonceManager(w);
        const staking = Staking__factory.connect(contracts.staking!, signer);
        await (await EFedToken__factory.connect(contracts.token!, signer).approve(contracts.staking!, parseEther("2000"))).wait();
        await (await staking.deposit(parseEther("2000"))).wait();
        await (await staking.registerServer(variantId, first, last, server.url, parseUnits("0.001", 18) * BigInt(1 + (i % 5)))).wait();
      }),
    );
    await provider.send("evm_increaseTime", [601]); // past probation
    await provider.send("evm_mine", []);
    const readers = { registry: Staking__factory.connect(contracts.staking!, provider), trust: TrustScores__factory.connect(contracts.trust!, provider) };
    const runs: DiscoveryRow[] = [];
    for (let round = 0; round < 3; round++) {
      const started = performance.now();
      const found = await discoverRoute(readers, variantId, { numLayers: 4, measure: { budgetMs: 10_000 } });
      runs.push({
        servers: n,
        chainMs: found.chainMs,
        measureMs: found.measureMs,
        totalMs: performance.now() - started,
        candidates: found.pool.list().length,
        routeLength: found.route.servers.length,
      });
    }
    const mid = (f: (r: DiscoveryRow) => number): number => median(runs.map(f));
    rows.push({ servers: n, chainMs: mid((r) => r.chainMs), measureMs: mid((r) => r.measureMs), totalMs: mid((r) => r.totalMs), candidates: runs[0]!.candidates, routeLength: runs[0]!.routeLength });
    console.error(`discovery of ${n} servers: ${fmtNum(rows.at(-1)!.totalMs)} ms`);
  }
  for (const s of shards) await s.release();
  model.close();
  return rows;
}

// ---------------------------------------------------------------- failover

interface FailoverRow {
  failure: string;
  failovers: number;
  stepMs: number;
  stallMedianMs: number;
  stallMaxMs: number;
  identical: boolean;
}

/** A shard whose layers stop answering once `hang.on` is set (released at the end, so the server can stop). */
function hangable(real: Shard, hang: { on: boolean; release: (() => void)[] }): Shard {
  const wrapped = Object.create(real) as Shard;
  const stall = (): Promise<never> => new Promise((_, reject) => hang.release.push(() => reject(new Error("released"))));
  wrapped.compute = (h, c) => (hang.on ? stall() : real.compute(h, c));
  wrapped.computeBatch = (h, c) => (hang.on ? stall() : real.computeBatch(h, c));
  return wrapped;
}

async function benchFailover(): Promise<FailoverRow[]> {
  const model = ModelDirectory.open(join(root, "models/kjv-llama-6m"));
  const head = await Head.load(model);
  const prompt = [1, 52, 311, 9, 87, 1400, 23, 5];
  const tokens = 256;
  const every = 32;
  const spans = [
    [0, 4],
    [4, 8],
  ] as const;
  const shards = await Promise.all(spans.map(([f, l]) => Shard.load(model, f, l)));
  const variantId = "0x" + "ab".repeat(32);
  const rows: FailoverRow[] = [];

  const run = async (kind: "killed" | "hung"): Promise<{ ids: number[]; events: FailoverEvent[]; stepMs: number[] }> => {
    const pool = new CandidatePool();
    const live = new Map<string, { server: ShardServer; hang: { on: boolean; release: (() => void)[] } }>();
    const add = async (span: number): Promise<void> => {
      const hang = { on: false, release: [] as (() => void)[] };
      const server = await serve(hangable(shards[span]!, hang), variantId, Wallet.createRandom() as unknown as Wallet, `f-${kind}-${live.size}-${Date.now()}`);
      live.set(server.url, { server, hang });
      pool.addUnmeasured([{ url: server.url }]);
    };
    for (const span of [0, 1, 0, 1]) await add(span);
    await pool.measure();
    const plan = { numLayers: 8 };
    const events: FailoverEvent[] = [];
    const stepMs: number[] = [];
    const failover = await FailoverPipeline.connect(
      pool.plan(plan).servers.map((c) => c.url),
      8,
      pool.replanner(plan),
      { onFailover: (e) => events.push(e), ...(kind === "hung" ? { stepTimeoutMs: 1_000 } : {}) },
    );
    const failing: LayerPipeline = {
      openSequence: async (n) => {
        const sequence = await failover.openSequence(n);
        let step = 0;
        return {
          compute: async (hidden) => {
            const failing = step > 0 && step % every === 0 && (kind === "killed" || step <= 3 * every);
            if (failing) {
              const span = (step / every - 1) % 2;
              const victim = live.get(failover.route[span]!)!;
              if (kind === "killed") await stopServer(victim.server);
              else victim.hang.on = true;
              await add(span);
            }
            step++;
            const started = performance.now();
            const out = await sequence.compute(hidden);
            if (!failing && step > 1) stepMs.push(performance.now() - started);
            return out;
          },
          close: () => sequence.close(),
        };
      },
    };
    try {
      const ids = (await generate(head, failing, prompt, { maxTokens: tokens, temperature: 0 })).generatedIds;
      return { ids, events, stepMs };
    } finally {
      failover.close();
      for (const { server, hang } of live.values()) {
        for (const r of hang.release) r();
        await stopServer(server);
      }
    }
  };

  const { ids: reference } = await (async () => {
    // the uninterrupted run on the same kind of route, for the identity check
    const pool = new CandidatePool();
    const a = await serve(shards[0]!, variantId, Wallet.createRandom() as unknown as Wallet, "ref-a");
    const b = await serve(shards[1]!, variantId, Wallet.createRandom() as unknown as Wallet, "ref-b");
    const pipeline = await FailoverPipeline.connect([a.url, b.url], 8, pool.replanner({ numLayers: 8 }));
    try {
      return { ids: (await generate(head, pipeline, prompt, { maxTokens: tokens, temperature: 0 })).generatedIds };
    } finally {
      pipeline.close();
      await stopServer(a);
      await stopServer(b);
    }
  })();
  for (const kind of ["killed", "hung"] as const) {
    const { ids, events, stepMs } = await run(kind);
    const stalls = events.map((e) => e.stallMs);
    rows.push({
      failure: kind === "killed" ? "server killed (connections drop)" : "server hung (step deadline 1,000 ms)",
      failovers: events.length,
      stepMs: median(stepMs),
      stallMedianMs: median(stalls),
      stallMaxMs: Math.max(...stalls),
      identical: ids.length === reference.length && ids.every((t, i) => t === reference[i]),
    });
    console.error(`failover, ${kind}: ${events.length} failovers, median stall ${fmtNum(median(stalls))} ms`);
  }
  for (const s of shards) await s.release();
  await head.release();
  model.close();
  return rows;
}

// ---------------------------------------------------------------- report

async function main(): Promise<void> {
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, load ${loadavg()[0]!.toFixed(1)} at start, Node ${process.version}`;
  const discovery = await benchDiscovery([10, 100]);
  const failover = await benchFailover();
  const discoveryTable = markdownTable(
    ["registered servers", "chain reads (ms)", "measuring (ms)", "discovery total (ms)", "candidates", "route servers"],
    discovery.map((r) => [String(r.servers), fmtNum(r.chainMs), fmtNum(r.measureMs), fmtNum(r.totalMs), String(r.candidates), String(r.routeLength)]),
    ["right", "right", "right", "right", "right", "right"],
  );
  const failoverTable = markdownTable(
    ["failure", "failovers", "decode step median (ms)", "stall median (ms)", "stall max (ms)", "output = uninterrupted"],
    failover.map((r) => [r.failure, String(r.failovers), fmtNum(r.stepMs), fmtNum(r.stallMedianMs), fmtNum(r.stallMaxMs), r.identical ? "yes" : "NO"]),
    ["left", "right", "right", "right", "right", "left"],
  );
  const discoveryBody = [
    "`discoverRoute` (client/route/discover.ts) against a Hardhat node on 127.0.0.1: every server staked, past probation and",
    "live (in-process shard servers of a 4-layer model, ranges 0:2, 2:4, 0:4). Chain reads: `Staking.servers` in pages of 100",
    "and θ. Measuring: every candidate in parallel, a session round trip and a 1-token step each, never self-reported numbers.",
    "Medians of 3 rounds.",
    "",
    discoveryTable,
    "",
    `Machine: ${machine}.`,
  ].join("\n");
  const failoverBody = [
    "The shipped model (models/kjv-llama-6m) on a route of two servers (layers 0:4, 4:8) with one spare per span, greedy, 256",
    "tokens. Killed: a server of the route is stopped every 32 tokens (7 failovers). Hung: the layers of a route server stop",
    "answering every 32 tokens up to token 96 (3 failovers), found by the step deadline (1,000 ms here; 4,000 ms by default).",
    "The stall is the failed step's whole time: detection, ban, replanning (measuring the new spare), reconnecting, and",
    "replaying the history as one prefill on new sessions along the new route. Goal: ≤ 2 s on loopback, detection included.",
    "A killed server is found at once (its connection closes); a hung one after the step deadline, so with the default",
    "--step-timeout-ms of 4,000 its stall is about 3 s longer than in the hung row.",
    "",
    failoverTable,
    "",
    `Machine: ${machine}.`,
  ].join("\n");
  console.log("## Discovery\n\n" + discoveryTable + "\n\n## Failover\n\n" + failoverTable);

  const gateway = await benchGateway();
  console.log(`\n## ${gateway.heading}\n\n${gateway.body}`);
  writeDocSections(docPath, "The client: measured", { Discovery: discoveryBody, Failover: failoverBody, [gateway.heading]: gateway.body });
}

try {
  await main();
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
}
