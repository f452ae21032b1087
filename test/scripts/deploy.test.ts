import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { JsonRpcProvider, Wallet, ZeroHash, id, parseEther } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EFedToken__factory, ModelRegistry__factory, PaymentChannels__factory, Staking__factory, TrustScores__factory } from "../../types/ethers-contracts/index.js";
import { scratchDir } from "../engine/helpers.js";
import { startHardhatNode, type LocalChain } from "../support/hardhatNode.js";

const run = promisify(execFile);
const root = new URL("../..", import.meta.url).pathname;
let chain: LocalChain;
const scratch = scratchDir();

beforeAll(async () => {
  chain = await startHardhatNode();
}, 90_000);
afterAll(async () => {
  await chain.stop();
  scratch.cleanup();
});

describe("npm run deploy", () => {
  it("deploys to a running hardhat node, wires the roles and writes deployments/<chainId>.json", async () => {
    const holder = Wallet.createRandom().address;
    const dispute = Wallet.createRandom().address;
    await run(
      process.execPath,
      ["--import", "tsx", join(root, "scripts/deploy.ts"), "--rpc", chain.url, "--out-dir", scratch.dir, "--mint-to", holder, "--mint", "250", "--dispute-operator", dispute],
      { cwd: root },
    );
    const record = JSON.parse(readFileSync(join(scratch.dir, "31337.json"), "utf8")) as {
      chainId: string;
      contracts: Record<string, string>;
    };
    expect(record.chainId).toBe("31337");
    expect(Object.keys(record.contracts).sort()).toEqual(["auditLedger", "channels", "commitments", "dataRequests", "disputes", "registry", "rewards", "staking", "ticketBroker", "token", "trust"]);

    const provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true });
    const token = EFedToken__factory.connect(record.contracts.token!, provider);
    const staking = Staking__factory.connect(record.contracts.staking!, provider);
    const channels = PaymentChannels__factory.connect(record.contracts.channels!, provider);
    expect(await token.balanceOf(holder)).toBe(parseEther("250"));
    expect(await staking.trustSource()).toBe(record.contracts.trust);
    expect(await staking.hasRole(await staking.SLASHER_ROLE(), dispute)).toBe(true);
    expect(await staking.hasRole(await staking.COMMITMENTS_ROLE(), record.contracts.commitments!)).toBe(true);
    expect(await channels.rewardPool()).toBe(record.contracts.rewards);
    expect(await channels.trustRecorder()).toBe(record.contracts.trust);
    const trust = TrustScores__factory.connect(record.contracts.trust!, provider);
    expect(await trust.hasRole(await trust.PAYMENTS_ROLE(), record.contracts.channels!)).toBe(true);
    expect(await trust.hasRole(await trust.PAYMENTS_ROLE(), record.contracts.ticketBroker!)).toBe(true);
    expect(await trust.hasRole(await trust.AUDITOR_ROLE(), dispute)).toBe(true);
    expect(await staking.hasRole(await staking.SLASHER_ROLE(), record.contracts.disputes!)).toBe(true);
    expect(await trust.hasRole(await trust.AUDITOR_ROLE(), record.contracts.disputes!)).toBe(true);
    expect(await staking.hasRole(await staking.SLASHER_ROLE(), record.contracts.dataRequests!)).toBe(true);
    expect(await trust.hasRole(await trust.AUDITOR_ROLE(), record.contracts.dataRequests!)).toBe(true);
    // the audit ledger credits passes, pays for them and slashes false ones; disputes keep a server's stake slashable
    expect(await trust.hasRole(await trust.AUDITOR_ROLE(), record.contracts.auditLedger!)).toBe(true);
    expect(await staking.hasRole(await staking.SLASHER_ROLE(), record.contracts.auditLedger!)).toBe(true);
    expect(await staking.hasRole(await staking.COMMITMENTS_ROLE(), record.contracts.disputes!)).toBe(true);
    provider.destroy();
  });

  it("hands governance to --admin and the registrar role to --registrar; the deployer keeps only the devnet faucet", async () => {
    const admin = Wallet.createRandom().address;
    const registrar = Wallet.createRandom().address;
    const out = join(scratch.dir, "handoff");
    const { stdout } = await run(
      process.execPath,
      ["--import", "tsx", join(root, "scripts/deploy.ts"), "--rpc", chain.url, "--out-dir", out, "--admin", admin, "--registrar", registrar],
      { cwd: root },
    );
    const record = JSON.parse(readFileSync(join(out, "31337.json"), "utf8")) as { deployer: string; contracts: Record<string, string> };
    expect(stdout).toContain(`the deployer ${record.deployer} holds no role any more`);
    const provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true });
    const registry = ModelRegistry__factory.connect(record.contracts.registry!, provider);
    expect(await registry.hasRole(id("REGISTRAR_ROLE"), registrar)).toBe(true);
    expect(await registry.hasRole(id("REGISTRAR_ROLE"), admin)).toBe(false);
    expect(await registry.hasRole(ZeroHash, admin)).toBe(true);
    const channels = PaymentChannels__factory.connect(record.contracts.channels!, provider);
    for (const role of [ZeroHash, id("GOVERNANCE_ROLE")]) {
      expect(await channels.hasRole(role, admin)).toBe(true);
      expect(await channels.hasRole(role, record.deployer)).toBe(false);
      expect(await registry.hasRole(role, record.deployer)).toBe(false);
    }
    // devnet: the deployer stays the token's owner, a faucet, and says so
    expect(await EFedToken__factory.connect(record.contracts.token!, provider).owner()).toBe(record.deployer);
    expect(stdout).toContain(`token: ${record.deployer} may mint without limit (devnet faucet)`);
    provider.destroy();
  }, 120_000);

  it("refuses a bad --mint-to address with a message naming it", async () => {
    const err = await run(process.execPath, ["--import", "tsx", join(root, "scripts/deploy.ts"), "--rpc", chain.url, "--mint-to", "0xnope"], {
      cwd: root,
    }).then(
      () => undefined,
      (e: unknown) => e as { code: number; stderr: string },
    );
    expect(err?.code).toBe(1);
    expect(err?.stderr).toContain('"0xnope" is not an address');
  });
});
