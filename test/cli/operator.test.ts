import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { JsonRpcProvider, Wallet, getAddress, parseEther } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readManifest, variantIdOf } from "../../engine/model/manifest.js";
import { EFedToken__factory, PaymentChannels__factory, Staking__factory, type EFedToken, type Staking } from "../../types/ethers-contracts/index.js";
import { scratchDir } from "../engine/helpers.js";
import { startAnvil } from "../support/anvilNode.js";
import { DEV_KEYS } from "../support/devKeys.js";
import { runEfed } from "../support/efedProcess.js";
import { startHardhatNode, type LocalChain } from "../support/hardhatNode.js";

const run = promisify(execFile);
const root = new URL("../..", import.meta.url).pathname;
const MODEL = join(root, "models/kjv-llama-6m");
const VARIANT = variantIdOf(readManifest(MODEL)!);
const KEYS = {
  registrar: DEV_KEYS[0],
  server1: DEV_KEYS[1],
  server2: DEV_KEYS[2],
  verifier: DEV_KEYS[3],
} as const;
type Who = keyof typeof KEYS;
const address = (who: Who): string => new Wallet(KEYS[who]).address;
/** The parts of `efed operator status --json` the tests read. */
interface OperatorStatusJson {
  redeemed: { vouchers: number; earnedWei: string; feesWei: string };
  server: { eligible: boolean };
}
/** Devnet: 1,000 EFED base stake + 100 per layer; unbonding delay two days. */
const UNBONDING_DELAY_S = 2 * 24 * 3600;

for (const [chainName, start] of [
  ["a Hardhat node", () => startHardhatNode()],
  ["anvil", () => startAnvil()],
] as const) {
  describe(`efed operator and efed model register on ${chainName}`, () => {
    const scratch = scratchDir();
    let chain: LocalChain;
    let provider: JsonRpcProvider;
    let deployment: string;
    let token: EFedToken;
    let staking: Staking;
    let contracts: Record<string, string>;

    /** The data directory of `who`: its efed-server.key, as `efed server` would create it. */
    const dataDir = (who: Who): string => join(scratch.dir, who);
    const efed = (who: Who, ...args: string[]) => runEfed(...args, "--rpc", chain.url, "--deployment", deployment, "--data-dir", dataDir(who));
    const balances = async (who: Who) => ({ tokens: await token.balanceOf(address(who)), bonded: (await staking.operator(address(who))).bonded });

    beforeAll(async () => {
      chain = await start();
      const out = join(scratch.dir, "deployments");
      const holders = (["server1", "server2", "verifier"] as const).map(address).join(",");
      await run(process.execPath, ["--import", "tsx", join(root, "scripts/deploy.ts"), "--rpc", chain.url, "--out-dir", out, "--mint-to", holders, "--mint", "10000"], {
        cwd: root,
      });
      deployment = join(out, "31337.json");
      for (const who of Object.keys(KEYS) as Who[]) {
        mkdirSync(dataDir(who), { recursive: true });
        writeFileSync(join(dataDir(who), "efed-server.key"), `${KEYS[who]}\n`, { mode: 0o600 });
      }
      contracts = (JSON.parse(readFileSync(deployment, "utf8")) as { contracts: Record<string, string> }).contracts;
      // no request cache: a nonce read right after a mined transaction must be fresh
      provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true, cacheTimeout: -1 });
      token = EFedToken__factory.connect(contracts.token!, provider);
      staking = Staking__factory.connect(contracts.staking!, provider);
    }, 180_000);
    afterAll(async () => {
      provider?.destroy();
      await chain?.stop();
      scratch.cleanup();
    });

    it("registers the shipped model's variant from its directory, once", async () => {
      const first = await efed("registrar", "model", "register", MODEL);
      expect(first.stderr).toBe("");
      expect(JSON.parse(first.stdout)).toEqual({
        variantId: VARIANT,
        numLayers: 8,
        manifestURI: `file://${MODEL}/efed-manifest.json`,
        registered: "registered",
      });
      const again = await efed("registrar", "model", "register", MODEL);
      expect(JSON.parse(again.stdout)).toMatchObject({ variantId: VARIANT, registered: "already" });
    }, 60_000);

    it("refuses a variant registration from a key without the registrar role", async () => {
      const other = join(scratch.dir, "other-model");
      mkdirSync(other);
      for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]) writeFileSync(join(other, f), readFileSync(join(MODEL, f)));
      const manifest = { ...readManifest(MODEL)!, compression: { method: "test-copy" } };
      writeFileSync(join(other, "efed-manifest.json"), JSON.stringify(manifest));
      const r = await efed("server1", "model", "register", other);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe(
        `efed: ${address("server1")} does not hold the registry's REGISTRAR_ROLE on chain 31337: ask the registrar named at deploy (npm run deploy --registrar) to register it, or use that key`,
      );
    }, 60_000);

    it("refuses bad registrations before sending anything: no tokens leave the wallet", async () => {
      const unknown = await efed("server1", "operator", "register-server", "--variant", `0x${"ab".repeat(32)}`, "--layers", "0:4", "--endpoint", "ws://127.0.0.1:1", "--stake", "1400");
      expect(unknown.code).toBe(1);
      expect(unknown.stderr.trim()).toBe(
        `efed: variant 0x${"ab".repeat(32)} is not registered (or is retired) on chain 31337: register it with efed model register DIR (needs the registrar role)`,
      );
      const tooLittle = await efed("server1", "operator", "register-server", "--model", MODEL, "--layers", "0:4", "--endpoint", "ws://127.0.0.1:1", "--stake", "300");
      expect(tooLittle.code).toBe(1);
      expect(tooLittle.stderr.trim()).toBe(
        `efed: ${address("server1")} has 0 EFED bonded free of disputes plus a deposit of 300 EFED; serving layers 0–3 needs 1,400 EFED: deposit 1,100 EFED more (--stake)`,
      );
      const poor = await efed("server1", "operator", "register-server", "--model", MODEL, "--layers", "0:4", "--endpoint", "ws://127.0.0.1:1", "--stake", "20000");
      expect(poor.code).toBe(1);
      expect(poor.stderr.trim()).toBe(`efed: ${address("server1")} holds 10,000 EFED; this needs 20,000 EFED: get tokens first`);
      const beyond = await efed("server1", "operator", "register-server", "--model", MODEL, "--layers", "4:9", "--endpoint", "ws://127.0.0.1:1", "--stake", "1500");
      expect(beyond.stderr.trim()).toBe("efed: layers 4:9 are not a non-empty range within the variant's 8 layers");
      expect(await balances("server1")).toEqual({ tokens: parseEther("10000"), bonded: 0n });
    }, 120_000);

    it("says a deployment file does not match the chain, and what to do", async () => {
      const d = JSON.parse(readFileSync(deployment, "utf8")) as { chainId: string; contracts: Record<string, string> };
      const stale = join(scratch.dir, "stale.json");
      const nowhere = getAddress(`0x${"12".repeat(20)}`);
      writeFileSync(stale, JSON.stringify({ ...d, contracts: { ...d.contracts, token: nowhere } }));
      const r = await runEfed("operator", "status", "--rpc", chain.url, "--deployment", stale, "--data-dir", dataDir("server1"));
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe(
        `efed: ${stale} does not match chain 31337: there is no contract at ${nowhere} (token). The chain was restarted or redeployed since the file was written: ` +
          "deploy again (npm run deploy) or pass --deployment with this chain's file",
      );
      const otherChain = join(scratch.dir, "other-chain.json");
      writeFileSync(otherChain, JSON.stringify({ ...d, chainId: "8453" }));
      const wrong = await runEfed("operator", "status", "--rpc", chain.url, "--deployment", otherChain, "--data-dir", dataDir("server1"));
      expect(wrong.stderr.trim()).toBe(`efed: ${otherChain} is for chain 8453, the RPC endpoint is chain 31337`);
    }, 60_000);

    it("stakes and registers two servers through the CLI; status shows them", async () => {
      const s1 = await efed("server1", "operator", "register-server", "--model", MODEL, "--layers", "0:4", "--endpoint", "ws://127.0.0.1:7001", "--price", "0.001", "--stake", "1400");
      expect(s1.stderr).toBe("");
      expect(s1.stdout.trim()).toBe(
        `${address("server1")} serves variant ${VARIANT} layers 0–3 at ws://127.0.0.1:7001 for 0.001 EFED per token (registration 1; 1,400 EFED bonded, 1,400 EFED needed)`,
      );
      const dep = await efed("server2", "operator", "deposit", "--amount", "1000");
      expect(dep.stdout.trim()).toBe(`deposited 1,000 EFED; ${address("server2")} has 1,000 EFED bonded`);
      const s2 = await efed("server2", "operator", "register-server", "--variant", VARIANT, "--layers", "4:8", "--endpoint", "ws://127.0.0.1:7002", "--price", "0.002", "--stake", "500");
      expect(s2.code).toBe(0);
      expect(await balances("server1")).toEqual({ tokens: parseEther("8600"), bonded: parseEther("1400") });
      expect(await balances("server2")).toEqual({ tokens: parseEther("8500"), bonded: parseEther("1500") });

      const status = await efed("server2", "operator", "status", "--json");
      expect(JSON.parse(status.stdout)).toEqual({
        address: address("server2"),
        chainId: "31337",
        role: "server",
        tokenBalanceWei: parseEther("8500").toString(),
        stake: { bondedWei: parseEther("1500").toString(), freeWei: parseEther("1500").toString(), unbondingWei: "0", lockedWei: "0" },
        server: {
          variantId: VARIANT,
          firstLayer: 4,
          lastLayer: 8,
          endpoint: "ws://127.0.0.1:7002",
          pricePerTokenWei: parseEther("0.002").toString(),
          registrationId: "2",
          minimumStakeWei: parseEther("1400").toString(),
          active: true,
          serving: true,
          eligible: false, // still on probation
        },
        trust: { scoreWad: parseEther("0.5").toString(), passedAudits: "0", failedAudits: "0", paidWorkWei: "0" },
        batchesPosted: "0",
        redeemed: { vouchers: 0, earnedWei: "0", feesWei: "0" },
      });
      const text = await efed("server1", "operator", "status");
      expect(text.stdout).toContain(`server     variant ${VARIANT} layers 0–3 at ws://127.0.0.1:7001, 0.001 EFED per token`);
      expect(text.stdout).toContain("earnings   0 vouchers redeemed: 0 EFED earned, 0 EFED protocol fees");
    }, 120_000);

    it("updates a server's price and endpoint in place", async () => {
      const r = await efed("server1", "operator", "register-server", "--model", MODEL, "--layers", "0:4", "--endpoint", "ws://127.0.0.1:7101", "--price", "0.0015");
      expect(r.code).toBe(0);
      const s = await staking.server(address("server1"));
      expect([s.endpoint, s.pricePerToken, s.registrationId]).toEqual(["ws://127.0.0.1:7101", parseEther("0.0015"), 1n]);
    }, 60_000);

    it("registers a verifier with the minimum stake, and keeps its key out of the server role", async () => {
      const r = await efed("verifier", "operator", "register-verifier");
      expect(r.stdout.trim()).toBe(`${address("verifier")} is a verifier with 500 EFED bonded`);
      expect(await staking.isActiveVerifier(address("verifier"))).toBe(true);
      const asServer = await efed("verifier", "operator", "register-server", "--model", MODEL, "--layers", "0:4", "--endpoint", "ws://127.0.0.1:1", "--stake", "1400");
      expect(asServer.stderr.trim()).toBe(`efed: ${address("verifier")} is registered as a verifier; a server needs its own key (or deregister the verifier first)`);
      expect(await balances("verifier")).toEqual({ tokens: parseEther("9500"), bonded: parseEther("500") });
    }, 60_000);

    it("status counts the vouchers a server redeemed, what it earned and the fees", async () => {
      const server1 = address("server1");
      const funder = await provider.getSigner(0);
      const client = Wallet.createRandom().connect(provider);
      await (await funder.sendTransaction({ to: client.address, value: parseEther("1") })).wait();
      await (await token.connect(funder).mint(client.address, parseEther("10"))).wait();
      // past the devnet's 10-minute probation: only then may a client open a channel to the server
      await provider.send("evm_increaseTime", [601]);
      await provider.send("evm_mine", []);
      const channels = PaymentChannels__factory.connect(contracts.channels!, client);
      await (await token.connect(client).approve(contracts.channels!, parseEther("10"))).wait();
      const channelId = await channels.nextChannelId(client.address, server1);
      await (await channels.open(server1, parseEther("10"))).wait();
      const server = new Wallet(KEYS.server1, provider);
      for (const cumulative of [parseEther("2"), parseEther("3")]) {
        const signature = client.signingKey.sign(await channels.voucherDigest(channelId, cumulative)).serialized;
        await (await channels.connect(server).redeem(channelId, cumulative, signature)).wait();
      }
      const status = JSON.parse((await efed("server1", "operator", "status", "--json")).stdout) as OperatorStatusJson;
      // devnet fee: 500 bps of every redemption
      expect(status.redeemed).toEqual({ vouchers: 2, earnedWei: parseEther("2.85").toString(), feesWei: parseEther("0.15").toString() });
      expect(status.server.eligible).toBe(true);
    }, 120_000);

    it("unbonds what the range does not need, refuses to withdraw early, and withdraws after the delay", async () => {
      const tooMuch = await efed("server2", "operator", "unbond", "--amount", "200");
      expect(tooMuch.stderr.trim()).toBe(
        "efed: unbonding 200 EFED would leave 1,300 EFED bonded, below the 1,400 EFED its role needs: unbond at most 100 EFED, or deregister first (efed operator deregister)",
      );
      const unbond = await efed("server2", "operator", "unbond");
      const readyAt = (await staking.withdrawableAt(address("server2"))).toString();
      expect(unbond.stdout.trim()).toBe(`unbonding 100 EFED; withdrawable from ${new Date(Number(readyAt) * 1000).toISOString().replace(".000Z", "Z")}`);
      const early = await efed("server2", "operator", "withdraw");
      expect(early.code).toBe(1);
      expect(early.stderr).toMatch(/^efed: 100 EFED unbonding can be withdrawn from \S+Z; the chain's time is \S+Z\n$/);

      await provider.send("evm_increaseTime", [UNBONDING_DELAY_S + 1]);
      await provider.send("evm_mine", []);
      const withdraw = await efed("server2", "operator", "withdraw");
      expect(withdraw.stdout.trim()).toBe(`withdrew 100 EFED to ${address("server2")}`);
      expect(await balances("server2")).toEqual({ tokens: parseEther("8600"), bonded: parseEther("1400") });
      const nothing = await efed("server2", "operator", "withdraw");
      expect(nothing.stderr.trim()).toBe(`efed: ${address("server2")} has nothing unbonding: request unbonding first (efed operator unbond)`);
    }, 120_000);

    it("deregisters, then unbonds everything", async () => {
      expect((await efed("server1", "operator", "deregister")).code).toBe(0);
      const r = await efed("server1", "operator", "unbond");
      expect(r.stdout).toMatch(/^unbonding 1,400 EFED; withdrawable from /);
      const status = JSON.parse((await efed("server1", "operator", "status", "--json")).stdout) as { role: string; stake: Record<string, string> };
      expect(status.role).toBe("none");
      expect(status.stake).toMatchObject({ bondedWei: "0", unbondingWei: parseEther("1400").toString() });
    }, 60_000);
  });
}
