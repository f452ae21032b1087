import { execFile, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { JsonRpcProvider, Wallet } from "ethers";
import { EFedToken__factory } from "../../types/ethers-contracts/index.js";
import { DEV_KEYS } from "./devKeys.js";
import { EFED_BIN, spawnEfedServer } from "./efedProcess.js";
import { freePort, type LocalChain } from "./hardhatNode.js";

const run = promisify(execFile);
const root = new URL("../..", import.meta.url).pathname;
export const SHIPPED_MODEL = join(root, "models/kjv-llama-6m");

/** Who plays which part: a registrar of the model, two servers, a client (dev keys with gas on any devnet). */
export const KEYS = { registrar: DEV_KEYS[0], server1: DEV_KEYS[1], server2: DEV_KEYS[2], client: DEV_KEYS[3] } as const;
export type Who = keyof typeof KEYS;
export const address = (who: Who): string => new Wallet(KEYS[who]).address;
export const SERVERS = [
  { who: "server1", layers: "0:4" },
  { who: "server2", layers: "4:8" },
] as const;

export interface EfedResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The chain side of a paid test, as a user sets it up through the CLI. */
export interface PricedServers {
  deployment: string;
  contracts: Record<string, string>;
  provider: JsonRpcProvider;
  /** The servers' ws:// URLs, in SERVERS order. */
  urls: string[];
  onChain: () => string[];
  dataDir: (who: Who) => string;
  /** `efed ARGS` to completion, with the client wallet's password and key in its environment. */
  efed: (...args: string[]) => Promise<EfedResult>;
}

/**
 * Deploys to `chain` (tokens minted to the servers and the client), registers the shipped model, stakes
 * and registers two servers at 0.001 per token with `efed operator`, and moves past the probation
 * (runPricedServers then runs them). `dir` is the test's scratch directory.
 */
export async function startPricedServers(chain: LocalChain, dir: string): Promise<PricedServers> {
  const efed = (...args: string[]): Promise<EfedResult> =>
    run(process.execPath, [EFED_BIN, ...args], { env: { ...process.env, EFED_WALLET_PASSWORD: "pw", EFED_WALLET_IMPORT_KEY: KEYS.client } }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
  const out = join(dir, "deployments");
  const holders = (["server1", "server2", "client"] as const).map(address).join(",");
  await run(process.execPath, ["--import", "tsx", join(root, "scripts/deploy.ts"), "--rpc", chain.url, "--out-dir", out, "--mint-to", holders, "--mint", "10000"], { cwd: root });
  const deployment = join(out, "31337.json");
  const contracts = (JSON.parse(readFileSync(deployment, "utf8")) as { contracts: Record<string, string> }).contracts;
  const provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true, cacheTimeout: -1 });
  const onChain = (): string[] => ["--rpc", chain.url, "--deployment", deployment];
  const dataDir = (who: Who): string => join(dir, who);
  for (const who of Object.keys(KEYS) as Who[]) {
    mkdirSync(dataDir(who), { recursive: true });
    writeFileSync(join(dataDir(who), "efed-server.key"), `${KEYS[who]}\n`, { mode: 0o600 });
  }
  const model = await efed("model", "register", SHIPPED_MODEL, ...onChain(), "--data-dir", dataDir("registrar"));
  succeeded("efed model register", model);
  const urls: string[] = [];
  for (const { who, layers } of SERVERS) {
    const url = `ws://127.0.0.1:${await freePort()}`;
    const registered = await efed("operator", "register-server", "--model", SHIPPED_MODEL, "--layers", layers, "--endpoint", url, "--price", "0.001", "--stake", "1400", ...onChain(), "--data-dir", dataDir(who));
    succeeded(`efed operator register-server (${who})`, registered);
    urls.push(url);
  }
  await provider.send("evm_increaseTime", [601]); // past the devnet probation
  await provider.send("evm_mine", []);
  return { deployment, contracts, provider, urls, onChain, dataDir, efed };
}

/**
 * Runs the registered servers (`efed server` re-registers the same work in place) with `serverArgs`,
 * and imports the client's key into `walletFile` unless it exists (servers run again). Returns the
 * servers' token balances before they ran.
 */
export async function runPricedServers(s: PricedServers, children: ChildProcess[], walletFile: string, serverArgs: readonly string[] = []): Promise<bigint[]> {
  const token = EFedToken__factory.connect(s.contracts.token!, s.provider);
  const balances: bigint[] = [];
  for (const [i, { who, layers }] of SERVERS.entries()) {
    balances.push(await token.balanceOf(address(who)));
    await spawnEfedServer(
      ["--model", SHIPPED_MODEL, "--layers", layers, "--port", new URL(s.urls[i]!).port, ...s.onChain(), "--key", join(s.dataDir(who), "efed-server.key"), "--price", "0.001",
        "--forward-private", "--store", join(s.dataDir(who), "store.sqlite"), ...serverArgs],
      children,
    );
  }
  if (existsSync(walletFile)) return balances;
  const imported = await s.efed("wallet", "import", "--wallet", walletFile, "--kdf-cost", "1024");
  succeeded("efed wallet import", imported);
  if (!imported.stdout.includes(address("client"))) throw new Error(`efed wallet import did not name the client's address ${address("client")}:\n${imported.stdout}`);
  return balances;
}

/** Throws with what the command printed unless it exited 0 and wrote nothing to stderr (a setup step, not what a test checks). */
export function succeeded(what: string, r: EfedResult): void {
  if (r.code !== 0 || r.stderr !== "") throw new Error(`${what} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
}
