import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { JsonRpcProvider, NonceManager, Wallet, parseEther, parseUnits, type Signer } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FailoverPipeline, type FailoverEvent } from "../../client/failover.js";
import { generate } from "../../client/generate.js";
import { LocalPipeline } from "../../client/localPipeline.js";
import { discoverRoute, planOptions } from "../../client/route/discover.js";
import { formatWad } from "../../client/route/discovery.js";
import { buildManifest, variantIdOf } from "../../engine/model/manifest.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { tinyConfig, writeRandomModel } from "../../engine/model/randomModel.js";
import { Head } from "../../engine/runtime/head.js";
import { EFedToken__factory, ModelRegistry__factory, Staking__factory, TrustScores__factory } from "../../types/ethers-contracts/index.js";
import { scratchDir } from "../engine/helpers.js";
import { startServer, type RunningServer } from "../node/support.js";
import { runEfed } from "../support/efedProcess.js";
import { beforeEachStep } from "../support/stepHook.js";
import { freePort, startHardhatNode, type LocalChain } from "../support/hardhatNode.js";

const run = promisify(execFile);
const root = new URL("../..", import.meta.url).pathname;
const scratch = scratchDir();
const modelDir = join(scratch.dir, "tiny");
const PROMPT = [1, 5, 9];
const TOKENS = 12;
const MILLI = parseUnits("0.001", 18);
let chain: LocalChain;
let provider: JsonRpcProvider;
let admin: Signer;
let contracts: Record<string, string>;
let deploymentFile: string;
let model: ModelDirectory;
let head: Head;
let variantId: string;
let expected: number[];
const servers: RunningServer[] = [];
/** The registered servers by name, with their endpoint and operator. */
const named: Record<string, { url: string; operator: string; server?: RunningServer }> = {};

/** Funds a fresh operator, stakes 2000 tokens and registers it for `first:last` at `endpoint`. */
async function register(name: string, first: number, last: number, price: bigint, endpoint: string, wallet = Wallet.createRandom()): Promise<void> {
  const token = EFedToken__factory.connect(contracts.token!, admin);
  await (await admin.sendTransaction({ to: wallet.address, value: parseEther("1") })).wait();
  await (await token.transfer(wallet.address, parseEther("2000"))).wait();
  const signer = new NonceManager(wallet.connect(provider));
  await (await EFedToken__factory.connect(contracts.token!, signer).approve(contracts.staking!, parseEther("2000"))).wait();
  const staking = Staking__factory.connect(contracts.staking!, signer);
  await (await staking.deposit(parseEther("2000"))).wait();
  await (await staking.registerServer(variantId, first, last, endpoint, price)).wait();
  named[name] = { url: endpoint, operator: wallet.address };
}

/** Starts a shard server for `first:last` and registers it under its own key. */
async function serve(name: string, first: number, last: number, price: bigint): Promise<void> {
  const s = await startServer(model, first, last, scratch.dir, {}, variantId);
  servers.push(s);
  await register(name, first, last, price, s.server.url, s.wallet);
  named[name]!.server = s;
}

beforeAll(async () => {
  writeRandomModel(modelDir, tinyConfig(), { seed: 4, dtype: "F16", std: 0.15 });
  model = ModelDirectory.open(modelDir);
  head = await Head.load(model);
  variantId = variantIdOf(buildManifest(model));
  const local = await LocalPipeline.load(model);
  expected = (await generate(head, local, PROMPT, { maxTokens: TOKENS, temperature: 0 })).generatedIds;
  await local.release();

  chain = await startHardhatNode();
  provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true });
  admin = new NonceManager(await provider.getSigner(0));
  const adminAddress = await admin.getAddress();
  // the admin may record audits (--dispute-operator): how a server's trust falls below θ here
  const args = ["--rpc", chain.url, "--out-dir", scratch.dir, "--mint-to", adminAddress, "--mint", "100000", "--dispute-operator", adminAddress];
  await run(process.execPath, ["--import", "tsx", join(root, "scripts/deploy.ts"), ...args], { cwd: root });
  deploymentFile = join(scratch.dir, "31337.json");
  contracts = (JSON.parse(readFileSync(deploymentFile, "utf8")) as { contracts: Record<string, string> }).contracts;
  await (await ModelRegistry__factory.connect(contracts.registry!, admin).registerVariant(variantId, 4, "file://test")).wait();

  await serve("a", 0, 2, MILLI);
  await serve("b", 2, 4, MILLI);
  await serve("whole", 0, 4, 50n * MILLI);
  await serve("distrusted", 0, 2, MILLI);
  await (await TrustScores__factory.connect(contracts.trust!, admin).recordAudit(named.distrusted!.operator, false)).wait();
  await register("dead", 2, 4, MILLI, `ws://127.0.0.1:${await freePort()}`); // nothing listens there
  await register("liar", 2, 4, MILLI, named.b!.url); // b's endpoint: b answers with its own address
  // past the probation of every server so far; the next one registers after it
  await provider.send("evm_increaseTime", [601]);
  await provider.send("evm_mine", []);
  await serve("late", 0, 4, MILLI);
}, 240_000);

afterAll(async () => {
  for (const s of servers) await s.stop();
  provider?.destroy();
  await chain?.stop();
  await head?.release();
  model?.close();
  scratch.cleanup();
});

function chainReaders() {
  return {
    registry: Staking__factory.connect(contracts.staking!, provider),
    trust: TrustScores__factory.connect(contracts.trust!, provider),
  };
}

describe("route discovery on chain", () => {
  it("reads every server page by page, drops those below θ, over --max-price, in probation, unreachable or lying, and plans over the rest", async () => {
    const found = await discoverRoute(chainReaders(), variantId, { numLayers: 4, maxPricePerToken: 3n * MILLI, pageSize: 2 });
    expect(found.registered.map((s) => s.endpoint)).toEqual(["a", "b", "whole", "distrusted", "dead", "liar", "late"].map((n) => named[n]!.url));
    expect(found.thetaWad).toBe(parseEther("0.4"));
    const distrust = await TrustScores__factory.connect(contracts.trust!, provider).trustOf(named.distrusted!.operator);
    expect(found.dropped.map((d) => [d.server.operator, d.reason])).toEqual([
      [named.whole!.operator, `price ${50n * MILLI} per token over --max-price ${3n * MILLI}`],
      [named.distrusted!.operator, `trust ${formatWad(distrust)} below θ 0.400`],
      [named.late!.operator, "not eligible (not serving, in probation, or its variant retired)"],
    ]);
    const failed = found.pool.measurements.filter((m) => !m.ok);
    expect(failed.map((m) => m.url)).toEqual([named.dead!.url, named.liar!.url]);
    expect(failed[1]).toMatchObject({ reason: `announces address ${named.b!.operator}, the chain registers ${named.liar!.operator} at this endpoint` });
    expect(found.pool.list().map((c) => c.url)).toEqual([named.a!.url, named.b!.url]);
    expect(found.route.servers.map((c) => c.url)).toEqual([named.a!.url, named.b!.url]);
    expect(found.route.pricePerToken).toBe(2n * MILLI);
  });

  it("a --min-trust above every server's trust leaves no route, naming the uncovered layers", async () => {
    await expect(discoverRoute(chainReaders(), variantId, { numLayers: 4, minTrust: 0.6 })).rejects.toThrow(
      "no route covers the model's 4 layers: no usable server serves layer(s) 0–3",
    );
  });

  it("efed generate --rpc --explain-route: discovers, explains and generates", async () => {
    const r = await runEfed(
      "generate", "--model", modelDir, "--ids", PROMPT.join(","), "--max-tokens", String(TOKENS), "--json",
      "--rpc", chain.url, "--deployment", deploymentFile, "--max-price", "0.003", "--explain-route",
    );
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
    expect((JSON.parse(r.stdout) as { generatedIds: number[] }).generatedIds).toEqual(expected);
    expect(r.stderr).toContain("chain: 7 server(s) registered for the variant, θ = 0.400");
    expect(r.stderr).toContain(`  dropped  ${named.late!.url}  ${named.late!.operator}  layers 0:4: not eligible`);
    expect(r.stderr).toContain(`  unusable ${named.liar!.url}: announces address ${named.b!.operator}`);
    expect(r.stderr).toMatch(new RegExp(`route \\(2 server\\(s\\), least total cost [0-9.]+ of the chains of whole ranges from layer 0; expected [0-9.]+ ms and ${2n * MILLI} per token\\):\\n  0:2  ${named.a!.url}\\n  2:4  ${named.b!.url}`));
  });
  it("fails over to another discovered server when one on the route is stopped, with the uninterrupted tokens", async () => {
    // by price the route is a→b (whole asks 25 times more); stopping a leaves whole as the only way through 0:2
    const choice = { numLayers: 4, prefer: "price" as const };
    const found = await discoverRoute(chainReaders(), variantId, choice);
    expect(found.route.servers.map((c) => c.url)).toEqual([named.a!.url, named.b!.url]);
    const events: FailoverEvent[] = [];
    const failover = await FailoverPipeline.connect([named.a!.url, named.b!.url], 4, found.pool.replanner(planOptions(choice)), { onFailover: (e) => events.push(e) });
    const stopping = beforeEachStep(failover, async (step) => {
      if (step === 4) await named.a!.server!.stop();
    });
    try {
      expect((await generate(head, stopping, PROMPT, { maxTokens: TOKENS, temperature: 0 })).generatedIds).toEqual(expected);
    } finally {
      failover.close();
    }
    expect(events.map((e) => [e.failedUrl, e.route, e.replayedTokens])).toEqual([[named.a!.url, [named.whole!.url], PROMPT.length + 4]]);
  });

});
