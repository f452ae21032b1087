import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { JsonRpcProvider, ZeroAddress, ZeroHash, id, parseEther } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EFedToken__factory, ModelRegistry__factory, Staking__factory } from "../../types/ethers-contracts/index.js";
import { scratchDir } from "../engine/helpers.js";
import { startAnvil } from "../support/anvilNode.js";
import type { LocalChain } from "../support/hardhatNode.js";

const run = promisify(execFile);
const root = new URL("../..", import.meta.url).pathname;
// anvil's (and Hardhat's) well-known development account #0 and two more addresses: public test keys, funded only on local nodes
const DEPLOYER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const DEPLOYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const MULTISIG = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const HOLDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const scratch = scratchDir();
let devnet: LocalChain;
let other: LocalChain;

beforeAll(async () => {
  [devnet, other] = await Promise.all([startAnvil(), startAnvil({ chainId: 4242 })]);
}, 60_000);
afterAll(async () => {
  await Promise.all([devnet?.stop(), other?.stop()]);
  scratch.cleanup();
});

function deploy(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(process.execPath, ["--import", "tsx", join(root, "scripts/deploy.ts"), ...args], { cwd: root, env: { ...process.env, ...env } }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

describe("npm run deploy on anvil (a second EVM implementation)", () => {
  it("deploys the devnet with one transaction at a time and every contract has code", async () => {
    const out = join(scratch.dir, "devnet");
    const r = await deploy(["--rpc", devnet.url, "--out-dir", out, "--mint-to", HOLDER, "--mint", "500"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const record = JSON.parse(readFileSync(join(out, "31337.json"), "utf8")) as { contracts: Record<string, string>; params: string; tokenMinter: string };
    expect(record.params).toBe("devnet");
    expect(record.tokenMinter).toBe(DEPLOYER);
    expect(r.stdout).toContain(`token: ${DEPLOYER} may mint without limit (devnet faucet)`);
    const provider = new JsonRpcProvider(devnet.url, undefined, { staticNetwork: true });
    for (const address of Object.values(record.contracts)) expect((await provider.getCode(address)).length).toBeGreaterThan(2);
    expect(await EFedToken__factory.connect(record.contracts.token!, provider).balanceOf(HOLDER)).toBe(parseEther("500"));
    provider.destroy();
  }, 120_000);

  it("refuses devnet parameters on another chain id, naming both and what to do", async () => {
    const r = await deploy(["--rpc", other.url, "--out-dir", join(scratch.dir, "refused")], { EFED_DEPLOYER_KEY: DEPLOYER_KEY });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(
      `deploy failed: ${join(root, "scripts/params/devnet.json")} ("devnet") is for chain 31337; ${other.url} is chain 4242. ` +
        "Devnet parameters (short periods, a faucet) must not reach a chain with real value: write a parameter file for this chain (docs/deploy.md), or pass --force-params if you mean it",
    );
  });

  it("deploys a network's parameter file, mints its allocations, fixes the supply and hands every governance role to --admin", async () => {
    const doc = JSON.parse(readFileSync(join(root, "scripts/params/example-testnet.json"), "utf8")) as Record<string, Record<string, unknown>>;
    doc.chainIds = [4242] as unknown as Record<string, unknown>;
    doc.name = "testnet-4242" as unknown as Record<string, unknown>;
    doc.token!.allocations = [{ to: HOLDER, amount: "1000000 EFED" }];
    const paramsFile = join(scratch.dir, "testnet-4242.json");
    writeFileSync(paramsFile, JSON.stringify(doc));
    const out = join(scratch.dir, "testnet");
    const r = await deploy(["--rpc", other.url, "--params", paramsFile, "--admin", MULTISIG, "--out-dir", out], { EFED_DEPLOYER_KEY: DEPLOYER_KEY });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`the deployer ${DEPLOYER} holds no role any more`);
    expect(r.stdout).toContain("token: no one can mint any more (supply fixed)");
    const record = JSON.parse(readFileSync(join(out, "4242.json"), "utf8")) as { contracts: Record<string, string>; admin: string; registrar: string; tokenMinter: string };
    expect(record).toMatchObject({ admin: MULTISIG, registrar: MULTISIG, tokenMinter: ZeroAddress });

    const provider = new JsonRpcProvider(other.url, undefined, { staticNetwork: true });
    const token = EFedToken__factory.connect(record.contracts.token!, provider);
    expect(await token.owner()).toBe(ZeroAddress);
    expect(await token.totalSupply()).toBe(parseEther("1000000"));
    expect(await token.balanceOf(HOLDER)).toBe(parseEther("1000000"));
    const staking = Staking__factory.connect(record.contracts.staking!, provider);
    expect((await staking.stakeParams()).serverBaseStake).toBe(parseEther("10000"));
    expect((await staking.timing()).unbondingDelay).toBe(1_209_600n);
    const registry = ModelRegistry__factory.connect(record.contracts.registry!, provider);
    for (const [contract, roles] of [
      [staking, [ZeroHash, id("GOVERNANCE_ROLE")]],
      [registry, [ZeroHash, id("GOVERNANCE_ROLE"), id("REGISTRAR_ROLE")]],
    ] as const) {
      for (const role of roles) {
        expect(await contract.hasRole(role, MULTISIG)).toBe(true);
        expect(await contract.hasRole(role, DEPLOYER)).toBe(false);
      }
    }
    provider.destroy();
  }, 180_000);

  it("requires --admin off a devnet", async () => {
    const doc = JSON.parse(readFileSync(join(root, "scripts/params/example-testnet.json"), "utf8")) as Record<string, unknown>;
    doc.chainIds = [4242];
    const paramsFile = join(scratch.dir, "noadmin.json");
    writeFileSync(paramsFile, JSON.stringify(doc));
    const r = await deploy(["--rpc", other.url, "--params", paramsFile, "--out-dir", join(scratch.dir, "noadmin")], { EFED_DEPLOYER_KEY: DEPLOYER_KEY });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('deploy failed: --admin is required with "example-testnet": name the multisig or timelock that governs the contracts');
  });
});
