import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { JsonRpcProvider, formatEther, parseUnits } from "ethers";
import { writeKeystore } from "../../client/wallet/keystore.js";
import { Ledger } from "../../client/wallet/ledger.js";
import { PASSWORD_ENV } from "../../client/wallet/password.js";
import { readManifest, variantIdOf } from "../../engine/model/manifest.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { compressModel } from "../../node/compress/compressModel.js";
import { PaymentChannels__factory } from "../../types/ethers-contracts/index.js";
import type { ProtocolAddresses } from "../lib/deployProtocol.js";
import { followChainEvents } from "./chainEvents.js";
import { deployOrReuse, deployerKey, devnetKey, fundAll, operatorOn, registerVariants, stakeServer } from "./chainSetup.js";
import { ChildSet, type DevnetChild } from "./children.js";
import { runDemo, type DemoResult } from "./demo.js";
import { CHAIN_STAGE, mineEvery, startLocalChain } from "./localChain.js";
import { DEVNET_DEFAULTS, type DevnetOptions } from "./options.js";
import { ACCOUNT_ETH, SERVER_STAKE, VERIFIER_TOKENS, WALLET_TOKENS, serverPlan, type ServerPlan } from "./params.js";
import { claimPort } from "./ports.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const EFED_BIN = join(root, "bin", "efed.mjs");
const CHEATING_SERVER = join(root, "scripts", "devnet", "cheatingServer.ts");
/** The model the project ships (the one the tests use). */
export const SHIPPED_MODEL = join(root, "models", "kjv-llama-6m");
/** The password of the devnet's wallet when $EFED_WALLET_PASSWORD is not set (a devnet key: it guards nothing of value). */
export const DEVNET_WALLET_PASSWORD = "devnet";
/** scrypt cost of the devnet's keystore: opened in milliseconds, unlike a real wallet's. */
const DEVNET_SCRYPT_N = 1024;
/** Seconds between a server's commitment batches: an audit follows a generation within seconds. */
const COMMIT_EVERY_SECONDS = 5;
/** A server redeems its vouchers once they owe it this much: less than one token's price, so every step is redeemed within a poll. */
const REDEEM_THRESHOLD_TOKENS = "0.0001";
/** Milliseconds between a verifier's rounds. */
const VERIFIER_POLL_MS = 1_000;
/** Stages in which the processes stop: the gateway first, then servers and verifiers, the chain last. */
const NODE_STAGE = CHAIN_STAGE + 1;
const GATEWAY_STAGE = NODE_STAGE + 1;

/** A running devnet, as `startDevnet` returns it. */
export interface Devnet {
  urls: { chain: string; gateway: string; dashboard: string; servers: Record<string, string> };
  addresses: ProtocolAddresses;
  /** Devnet accounts by role: deployer, server-1…4 (and the cheater), verifier-1 (auditor), verifier-2 (committee), wallet. */
  accounts: Record<string, string>;
  variants: { model: string; compressed: string };
  /** The model id clients ask the gateway for. */
  modelId: string;
  /** Every process started, with its pid and the port it listens on (the chain: none with --rpc). */
  processes: { name: string; pid: number; port?: number }[];
  dataDir: string;
  /** Milliseconds from the call to ready, and to the first answer of the demo. */
  timings: Record<string, number>;
  demo?: DemoResult;
  /** Stops every process in order (gateway, servers and verifiers, chain) and removes a temporary data directory. */
  stop(): Promise<void>;
}

/**
 * Starts the whole network on 127.0.0.1 and resolves once the gateway answers (and the demo ran):
 * a chain (started, or `rpc`), the contracts, the shipped model and its int8 variant registered,
 * four staked and priced servers (and a cheater when asked), an auditing verifier and a committee
 * verifier, a funded wallet and the gateway that pays with it. On a failure everything started is
 * stopped before the error is thrown.
 */
export async function startDevnet(options: Partial<DevnetOptions> = {}): Promise<Devnet> {
  const o: DevnetOptions = { ...DEVNET_DEFAULTS, ...options };
  const say = o.log ?? ((line: string) => console.log(line));
  const t0 = performance.now();
  const timings: Record<string, number> = {};
  // each phase ends with a mark: a start aborted (Ctrl-C) stops there
  const mark = (what: string): void => {
    timings[what] = Math.round(performance.now() - t0);
    o.signal?.throwIfAborted();
  };
  const temporary = o.state === undefined;
  const dataDir = temporary ? mkdtempSync(join(tmpdir(), "efed-devnet-")) : resolve(o.state!);
  mkdirSync(join(dataDir, "logs"), { recursive: true });
  const children = new ChildSet(join(dataDir, "logs"));
  const cleanups: (() => void)[] = [];
  let provider: JsonRpcProvider | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      for (const c of cleanups.reverse()) c();
      await children.stopAll(o.stopGraceMs, (name) => say(`  ${name} did not exit within ${o.stopGraceMs} ms of SIGTERM: killed (its log: ${join(dataDir, "logs", `${name}.log`)})`));
      provider?.destroy();
      if (temporary) rmSync(dataDir, { recursive: true, force: true });
    })());

  try {
    const chainKind = o.state !== undefined ? "anvil" : o.chain;
    const chainPort = o.rpc === undefined ? await claimPort(o.chainPort, "the chain's JSON-RPC", "--chain-port") : undefined;
    const gatewayPort = await claimPort(o.gatewayPort, "the gateway", "--gateway-port");
    say(`eFed devnet: data in ${dataDir}${temporary ? " (temporary: removed on stop; --state DIR keeps it)" : ""}, logs in ${join(dataDir, "logs")}`);
    if (o.state !== undefined && o.chain === "hardhat" && o.rpc === undefined) say("  (Hardhat's node keeps no state across restarts: --state runs anvil with its --state file)");

    // the chain starts while the compressed variant is written (or found from an earlier run)
    const chain =
      o.rpc === undefined
        ? startLocalChain(children, { kind: chainKind, port: chainPort!, timeoutMs: o.startTimeoutMs, ...(o.state === undefined ? {} : { stateFile: join(dataDir, "chain-state.json") }) })
        : undefined;
    chain?.catch(() => undefined); // awaited below; a failure must not surface as unhandled while compressing
    const variantsDir = temporary ? join(root, "node_modules", ".cache", "efed-devnet") : join(dataDir, "variants");
    const compressedDir = await ensureCompressedVariant(join(variantsDir, `${basename(SHIPPED_MODEL)}-int8`));
    const rpc = o.rpc ?? (await chain!).url;
    mark("chain");
    say(`  chain      ${o.rpc === undefined ? `${chainKind} node` : "external node"} ${rpc} (chain 31337)`);

    provider = new JsonRpcProvider(rpc, undefined, { staticNetwork: true, cacheTimeout: -1 });
    const deployer = deployerKey(provider);
    const deploymentFile = join(dataDir, "deployment.json");
    const { addresses, reused } = await deployOrReuse(deployer, deploymentFile);
    const stopMining = mineEvery(provider, o.mineEveryMs, (why) => say(`  (the node refused evm_mine, so no blocks are asked for: ${why})`));
    cleanups.push(stopMining);
    mark("deploy");
    say(`  contracts  ${reused ? "found from the last run" : "deployed"}: ${Object.entries(addresses).map(([n, a]) => `${n} ${a}`).join(", ")}`);

    const registrar = await operatorOn(rpc, deploymentFile, deployer);
    const [modelVariant, compressedVariant] = await registerVariants(registrar, [SHIPPED_MODEL, compressedDir]).finally(() => registrar.provider.destroy());
    const modelId = basename(SHIPPED_MODEL);
    const shipped = ModelDirectory.open(SHIPPED_MODEL);
    const plan = serverPlan(shipped.config.numLayers, o.cheater);
    shipped.close();
    say(`  model      ${modelId}: variant ${modelVariant} (registered, served)`);
    say(`  variant    ${basename(compressedDir)}: variant ${compressedVariant} (int8, registered)`);

    // every account: its key in the data directory, gas money and tokens
    const keyFile = (name: string): string => join(dataDir, "keys", `${name}.key`);
    const accounts: Record<string, string> = { deployer: deployer.address };
    const serverKeys = plan.map((s) => devnetKey(keyFile(s.name)));
    const verifierKeys = ["verifier-1", "verifier-2"].map((n) => devnetKey(keyFile(n)));
    const walletPath = join(dataDir, "wallet", "wallet.json");
    const walletKey = devnetKey(keyFile("wallet"));
    const password = process.env[PASSWORD_ENV] ?? DEVNET_WALLET_PASSWORD;
    if (!existsSync(walletPath)) {
      mkdirSync(join(dataDir, "wallet"), { recursive: true });
      await writeKeystore(walletPath, walletKey, password, DEVNET_SCRYPT_N);
    }
    for (const [i, s] of plan.entries()) accounts[s.name] = serverKeys[i]!.address;
    accounts["verifier-1"] = verifierKeys[0]!.address;
    accounts["verifier-2"] = verifierKeys[1]!.address;
    accounts.wallet = walletKey.address;
    await fundAll(deployer, addresses.token, [
      ...serverKeys.map((k) => ({ address: k.address, eth: ACCOUNT_ETH, tokens: SERVER_STAKE })),
      ...verifierKeys.map((k) => ({ address: k.address, eth: ACCOUNT_ETH, tokens: VERIFIER_TOKENS })),
      { address: walletKey.address, eth: ACCOUNT_ETH, tokens: WALLET_TOKENS },
    ]);
    mark("funded");

    // the verifiers stake and register themselves; meanwhile each server is staked and registered
    // through the operator logic, then started as `efed server` (which finds itself registered)
    const chainFlags = ["--rpc", rpc, "--deployment", deploymentFile];
    const env = { ...process.env, EFED_LOG_LEVEL: process.env.EFED_LOG_LEVEL ?? "info", [PASSWORD_ENV]: password };
    const verifiers = verifierKeys.map((_, i) =>
      startVerifier(children, `verifier-${i + 1}`, { auditing: i === 0, keyFile: keyFile(`verifier-${i + 1}`), dataDir: join(dataDir, "verifiers"), chainFlags, env, timeoutMs: o.startTimeoutMs }),
    );
    verifiers.forEach((v) => v.catch(() => undefined)); // awaited below, with the servers
    const ports = await Promise.all(plan.map(() => claimPort(0, "a server", "(none)")));
    const endpoints = ports.map((p) => `ws://127.0.0.1:${p}`);
    const servers = plan.map(async (s, i) => {
      const c = await operatorOn(rpc, deploymentFile, serverKeys[i]!);
      await stakeServer(c, { variantId: modelVariant!, first: s.first, last: s.last, endpoint: endpoints[i]!, priceWei: parseUnits(s.priceTokens, 18) }).finally(() => c.provider.destroy());
      return startServer(children, s, { port: ports[i]!, endpoint: endpoints[i]!, keyFile: keyFile(s.name), dataDir: join(dataDir, "servers", s.name), chainFlags, env, compressedDir, timeoutMs: o.startTimeoutMs });
    });
    await Promise.all(servers);
    mark("servers");
    for (const [i, s] of plan.entries()) {
      say(`  ${s.name.padEnd(10)} layers ${s.first}:${s.last}, ${s.priceTokens} EFED/token, ${endpoints[i]}, ${serverKeys[i]!.address}${s.cheat === undefined ? "" : ` CHEATS (${s.cheat})`}`);
    }
    say(`  verifier-1 audits every posted receipt, ${verifierKeys[0]!.address}`);
    say(`  verifier-2 committee duty (votes on disputes), ${verifierKeys[1]!.address}`);
    say(`  wallet     ${walletKey.address}: ${formatEther(WALLET_TOKENS)} EFED, keystore ${walletPath} (password: $${PASSWORD_ENV} or "${DEVNET_WALLET_PASSWORD}")`);

    // the gateway needs the servers only: it starts while the verifiers may still be registering
    const gateway = await startGateway(children, { port: gatewayPort, modelId, walletPath, chainFlags, env, timeoutMs: o.startTimeoutMs });
    await Promise.all(verifiers);
    mark("gateway");
    say(`  gateway    ${gateway.url}/v1 (OpenAI-compatible, model "${modelId}", pays with the wallet)`);
    say(`  dashboard  ${gateway.dashboard} (servers, layers, trust, money, disputes, chat; live)`);

    const names = new Map(Object.entries(accounts).map(([n, a]) => [a.toLowerCase(), n]));
    const serverNames = new Map(plan.map((s, i) => [endpoints[i]!, s.name]));
    const channels = PaymentChannels__factory.connect(addresses.channels, provider);
    const follower = followChainEvents(provider, addresses, {
      fromBlock: (await provider.getBlockNumber()) + 1,
      pollMs: 1_000,
      nameOf: (a) => names.get(a.toLowerCase()) ?? a,
      channelServer: async (id) => (await channels.channel(id)).server,
      say: (line) => say(`chain: ${line}`),
    });
    cleanups.push(() => follower.stop());

    let demo: DemoResult | undefined;
    if (o.demo) {
      demo = await runDemo(gateway.url, modelId, Ledger.pathFor(walletPath), (await provider.getNetwork()).chainId, addresses.channels);
      mark("demo");
      say(`demo: a paid, verified generation (${(demo.elapsedMs / 1000).toFixed(1)} s)`);
      say(`  > ${demo.prompt}`);
      say(`  < ${demo.answer.trim()}`);
      say(`  route ${demo.servers.map((url) => serverNames.get(url) ?? url).join(" -> ")}; cost ${demo.cost}`);
      for (const [server, r] of [...demo.paid].sort(([a], [b]) => (names.get(a.toLowerCase()) ?? a).localeCompare(names.get(b.toLowerCase()) ?? b))) {
        say(`  ${names.get(server.toLowerCase()) ?? server}: ${r.steps} receipts checked (${r.tokens} tokens), vouchers for ${formatEther(r.vouchersWei)} EFED signed`);
      }
      say("  the servers post these receipts on chain within seconds, verifier-1 audits them, the servers redeem the vouchers: watch the chain: lines");
    }

    const portOf = new Map<string, number>([...plan.map((s, i): [string, number] => [s.name, ports[i]!]), ["gateway", gatewayPort]]);
    if (chainPort !== undefined) portOf.set("chain", chainPort);
    const processes = children.children.map((c: DevnetChild) => ({ name: c.name, pid: c.pid, ...(portOf.has(c.name) ? { port: portOf.get(c.name)! } : {}) }));
    const devnet: Devnet = {
      urls: { chain: rpc, gateway: gateway.url, dashboard: gateway.dashboard, servers: Object.fromEntries(plan.map((s, i) => [s.name, endpoints[i]!])) },
      addresses,
      accounts,
      variants: { model: modelVariant!, compressed: compressedVariant! },
      modelId,
      processes,
      dataDir,
      timings,
      ...(demo === undefined ? {} : { demo }),
      stop,
    };
    mark("ready");
    if (o.readyFile !== undefined) writeFileSync(o.readyFile, JSON.stringify({ ...devnet, demo: undefined, stop: undefined }, null, 2) + "\n");
    return devnet;
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The int8 variant of the shipped model in `dir`, written the first time (about 2 s of CPU) into a
 * scratch directory beside it and renamed into place, so two devnets starting at once never see
 * half of one. Without --state, `dir` is in node_modules/.cache: kept across runs, like a build cache.
 */
async function ensureCompressedVariant(dir: string): Promise<string> {
  if (existsSync(dir) && readManifest(dir) !== undefined) return dir;
  mkdirSync(dirname(dir), { recursive: true });
  const scratch = mkdtempSync(`${dir}.partial-`);
  try {
    const report = await compressModel(SHIPPED_MODEL, scratch, { method: "int8" });
    if (variantIdOf(readManifest(scratch)!) !== report.variantId) throw new Error(`${scratch}: the written manifest is not the compressed variant's`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(scratch, dir);
  } catch (err) {
    if (!(existsSync(dir) && readManifest(dir) !== undefined)) throw err; // else another devnet wrote it first
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return dir;
}

interface NodeStart {
  keyFile: string;
  dataDir: string;
  chainFlags: string[];
  env: NodeJS.ProcessEnv;
  timeoutMs: number;
}

/** `efed server` for one planned server (a cheater: the same command, with its faulty shard, from scripts/devnet/cheatingServer.ts). */
function startServer(children: ChildSet, s: ServerPlan, o: NodeStart & { port: number; endpoint: string; compressedDir: string }): Promise<unknown> {
  const serverFlags = [
    ...["--model", SHIPPED_MODEL, "--layers", `${s.first}:${s.last}`, "--port", String(o.port), "--public-url", o.endpoint],
    ...["--key", o.keyFile, "--data-dir", o.dataDir, ...o.chainFlags, "--price", s.priceTokens, "--forward-private"],
    ...["--commit-every-seconds", String(COMMIT_EVERY_SECONDS), "--redeem-threshold", REDEEM_THRESHOLD_TOKENS, "--redeem-poll-ms", "2000"],
  ];
  mkdirSync(o.dataDir, { recursive: true });
  const args =
    s.cheat === undefined
      ? [EFED_BIN, "server", ...serverFlags]
      : ["--disable-warning=ExperimentalWarning", "--import", "tsx", CHEATING_SERVER, "--cheat", s.cheat, "--other-model", o.compressedDir, "--", ...serverFlags];
  return children.start({ name: s.name, command: process.execPath, args, env: o.env, stage: NODE_STAGE, timeoutMs: o.timeoutMs, ready: (l) => l.includes('"event":"listening"') });
}

/** `efed verifier`: the auditing one re-executes every posted receipt; the other only sits on committees. */
function startVerifier(children: ChildSet, name: string, o: NodeStart & { auditing: boolean }): Promise<unknown> {
  mkdirSync(o.dataDir, { recursive: true });
  const args = [
    ...[EFED_BIN, "verifier", "--key", o.keyFile, "--model", SHIPPED_MODEL, ...o.chainFlags, "--sample-rate", o.auditing ? "1" : "0"],
    ...["--poll-ms", String(VERIFIER_POLL_MS), "--state", join(o.dataDir, `${name}.sqlite`), "--data-dir", o.dataDir],
  ];
  return children.start({ name, command: process.execPath, args, env: o.env, stage: NODE_STAGE, timeoutMs: o.timeoutMs, ready: (l) => l.includes('"msg":"verifying"') });
}

/**
 * `efed gateway`, paying with the devnet's wallet, on a route found on chain (the cheapest:
 * --prefer price). The one place the devnet starts the gateway: its flags (a dashboard, say) go here.
 */
async function startGateway(
  children: ChildSet,
  o: { port: number; modelId: string; walletPath: string; chainFlags: string[]; env: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<{ url: string; dashboard: string }> {
  const args = [
    ...[EFED_BIN, "gateway", "--model", SHIPPED_MODEL, "--model-name", o.modelId, "--port", String(o.port), ...o.chainFlags],
    ...["--wallet", o.walletPath, "--prefer", "price", "--measure-budget-ms", "1000", "--dashboard"],
  ];
  const { line } = await children.start({ name: "gateway", command: process.execPath, args, env: o.env, stage: GATEWAY_STAGE, timeoutMs: o.timeoutMs, ready: (l) => l.includes('"event":"listening"') });
  const listening = JSON.parse(line) as { url: string; covered: boolean; dashboard?: string };
  if (!listening.covered) throw new Error(`the gateway found no route covering ${o.modelId}'s layers (see its log)`);
  return { url: listening.url, dashboard: listening.dashboard ?? `${listening.url}/dashboard/` };
}

export type { DevnetOptions } from "./options.js";
