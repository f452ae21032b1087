import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { JsonRpcProvider, NonceManager, Wallet, hexlify, parseEther, randomBytes } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RegisteredEndpoints, type StakingServerList } from "../../../node/chain/registeredEndpoints.js";
import { EFedToken__factory, ModelRegistry__factory, Staking__factory, type Staking } from "../../../types/ethers-contracts/index.js";
import { scratchDir } from "../../engine/helpers.js";
import { startHardhatNode, type LocalChain } from "../../support/hardhatNode.js";

const run = promisify(execFile);
const root = new URL("../../..", import.meta.url).pathname;
// Hardhat's well-known development accounts #1 and #2 (public test keys, funded only on local nodes).
const KEYS = ["0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d", "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"];
const scratch = scratchDir();
const variantId = hexlify(randomBytes(32));
let chain: LocalChain;
let provider: JsonRpcProvider;
let contracts: Record<string, string>;
let staking: Staking;

/** Stakes 2000 tokens with `key` and registers layers first:last of the variant at `endpoint`. */
async function registerServer(key: string, first: number, last: number, endpoint: string): Promise<void> {
  const signer = new NonceManager(new Wallet(key, provider));
  const token = EFedToken__factory.connect(contracts.token!, signer);
  const s = Staking__factory.connect(contracts.staking!, signer);
  await (await token.approve(contracts.staking!, parseEther("2000"))).wait();
  await (await s.deposit(parseEther("2000"))).wait();
  await (await s.registerServer(variantId, first, last, endpoint, 0n)).wait();
}

beforeAll(async () => {
  chain = await startHardhatNode();
  const holders = KEYS.map((k) => new Wallet(k).address).join(",");
  await run(process.execPath, ["--import", "tsx", join(root, "scripts/deploy.ts"), "--rpc", chain.url, "--out-dir", scratch.dir, "--mint-to", holders], { cwd: root });
  contracts = (JSON.parse(readFileSync(join(scratch.dir, "31337.json"), "utf8")) as { contracts: Record<string, string> }).contracts;
  provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true });
  await (await ModelRegistry__factory.connect(contracts.registry!, await provider.getSigner(0)).registerVariant(variantId, 8, "file://test")).wait();
  staking = Staking__factory.connect(contracts.staking!, provider);
}, 120_000);

afterAll(async () => {
  provider?.destroy();
  await chain?.stop();
  scratch.cleanup();
});

describe("RegisteredEndpoints (what a server on chain forwards to)", () => {
  it("allows the endpoints registered for the next layer range, in any spelling, and refreshes after its TTL", async () => {
    await registerServer(KEYS[0]!, 4, 8, "ws://127.0.0.1:9001");
    let nowMs = 0;
    let reads = 0;
    const counted: StakingServerList = { servers: (variant, offset, limit) => (reads++, staking.servers(variant, offset, limit)) };
    const endpoints = new RegisteredEndpoints({ staking: counted, variantId, ttlMs: 1_000, pageSize: 1, now: () => nowMs });
    expect(await endpoints.allowed("ws://127.0.0.1:9001", 4)).toBe(true);
    expect(await endpoints.allowed("WS://127.0.0.1:9001/", 4)).toBe(true);
    // another layer range, another endpoint, a URL that is no hop URL
    expect(await endpoints.allowed("ws://127.0.0.1:9001", 2)).toBe(false);
    expect(await endpoints.allowed("ws://127.0.0.1:9002", 4)).toBe(false);
    expect(await endpoints.allowed("http://127.0.0.1:9001", 4)).toBe(false);
    expect(reads).toBe(2); // pages of one: the server, then an empty page; the other asks reuse that read
    // a server registered meanwhile is seen once the TTL has passed
    await registerServer(KEYS[1]!, 4, 8, "wss://shard.example");
    expect(await endpoints.allowed("wss://shard.example:443", 4)).toBe(false);
    nowMs = 1_000;
    expect(await endpoints.allowed("wss://shard.example:443", 4)).toBe(true);
    expect(await endpoints.allowed("ws://127.0.0.1:9001", 4)).toBe(true);
  });

  it("shares one read among concurrent asks and does not keep a failed read", async () => {
    let reads = 0;
    let fail = true;
    const flaky: StakingServerList = {
      servers: async () => {
        reads++;
        if (fail) throw new Error("rpc down");
        return [{ firstLayer: 4n, collateralized: true, endpoint: "ws://10.0.0.1:7000" }, { firstLayer: 4n, collateralized: false, endpoint: "ws://10.0.0.2:7000" }];
      },
    };
    const endpoints = new RegisteredEndpoints({ staking: flaky, variantId, now: () => 0 });
    const asks = await Promise.allSettled([endpoints.allowed("ws://10.0.0.1:7000", 4), endpoints.allowed("ws://10.0.0.1:7000", 4)]);
    expect(asks.map((a) => (a.status === "rejected" ? (a.reason as Error).message : a.value))).toEqual(["rpc down", "rpc down"]);
    expect(reads).toBe(1);
    fail = false;
    expect(await endpoints.allowed("ws://10.0.0.1:7000", 4)).toBe(true);
    // a server whose stake no longer covers its range is not forwarded to
    expect(await endpoints.allowed("ws://10.0.0.2:7000", 4)).toBe(false);
    expect(reads).toBe(2);
  });

  it("validates its options", () => {
    expect(() => new RegisteredEndpoints({ staking, variantId, ttlMs: 0 })).toThrow("registered endpoints option ttlMs must be a positive integer, got 0");
  });
});
