import { execFile, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { JsonRpcProvider, Wallet, formatEther, parseEther } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EFedToken__factory, PaymentChannels__factory, type EFedToken, type PaymentChannels } from "../../types/ethers-contracts/index.js";
import { scratchDir } from "../engine/helpers.js";
import { startAnvil } from "../support/anvilNode.js";
import { DEV_KEYS } from "../support/devKeys.js";
import { EFED_BIN, spawnEfedServer, stopProcess } from "../support/efedProcess.js";
import { freePort, startHardhatNode, type LocalChain } from "../support/hardhatNode.js";

/**
 * The whole paid path as a user runs it, on two EVM implementations: deploy, register the shipped
 * model, stake and register two servers with `efed operator`, run them with `efed server`, pay a
 * forwarded and a relayed `efed generate` from an `efed wallet`, and check that what the CLI printed,
 * the wallet's channels and what each server redeemed on shutdown all agree, to the token.
 */
const run = promisify(execFile);
const root = new URL("../..", import.meta.url).pathname;
const MODEL = join(root, "models/kjv-llama-6m");
const PRICE = parseEther("0.001");
const FEE_BPS = 500n; // the devnet fee
const KEYS = {
  registrar: DEV_KEYS[0],
  server1: DEV_KEYS[1],
  server2: DEV_KEYS[2],
  client: DEV_KEYS[3],
} as const;
type Who = keyof typeof KEYS;
const address = (who: Who): string => new Wallet(KEYS[who]).address;
const SERVERS = [
  { who: "server1", layers: "0:4" },
  { who: "server2", layers: "4:8" },
] as const;

for (const [chainName, start] of [
  ["a Hardhat node", () => startHardhatNode()],
  ["anvil", () => startAnvil()],
] as const) {
  describe(`a paid efed generate over two servers registered through the CLI, on ${chainName}`, () => {
    const scratch = scratchDir();
    const walletFile = join(scratch.dir, "wallet.json");
    const children: ChildProcess[] = [];
    let chain: LocalChain;
    let provider: JsonRpcProvider;
    let deployment: string;
    let token: EFedToken;
    let channels: PaymentChannels;
    const urls: string[] = [];
    const serverBalances: bigint[] = [];

    const dataDir = (who: Who): string => join(scratch.dir, who);
    /** `efed ARGS` to completion, with the client wallet's password and key in its environment. */
    const efed = (...args: string[]) =>
      run(process.execPath, [EFED_BIN, ...args], { env: { ...process.env, EFED_WALLET_PASSWORD: "pw", EFED_WALLET_IMPORT_KEY: KEYS.client } }).then(
        (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
      );
    const onChain = (): string[] => ["--rpc", chain.url, "--deployment", deployment];

    beforeAll(async () => {
      chain = await start();
      const out = join(scratch.dir, "deployments");
      const holders = (["server1", "server2", "client"] as const).map(address).join(",");
      await run(process.execPath, ["--import", "tsx", join(root, "scripts/deploy.ts"), "--rpc", chain.url, "--out-dir", out, "--mint-to", holders, "--mint", "10000"], { cwd: root });
      deployment = join(out, "31337.json");
      const contracts = (JSON.parse(readFileSync(deployment, "utf8")) as { contracts: Record<string, string> }).contracts;
      provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true, cacheTimeout: -1 });
      token = EFedToken__factory.connect(contracts.token!, provider);
      channels = PaymentChannels__factory.connect(contracts.channels!, provider);
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
        const port = new URL(urls[i]!).port;
        // registered already: `efed server` re-registers the same work in place; the redeem threshold is never reached while serving
        await spawnEfedServer(
          ["--model", MODEL, "--layers", layers, "--port", port, ...onChain(), "--key", join(dataDir(who), "efed-server.key"), "--price", "0.001",
            "--forward-private", "--store", join(dataDir(who), "store.sqlite"), "--redeem-threshold", "1000000"],
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

    it("pays both servers forwarded and relayed; the printed cost, the wallet's channels and each server's redemption agree exactly", async () => {
      const perGeneration = `cost: ${formatEther(10n * PRICE)} EFED\n  ${address("server1")}: ${formatEther(5n * PRICE)} EFED\n  ${address("server2")}: ${formatEther(5n * PRICE)} EFED`;
      for (const relay of [[], ["--no-forward"]]) {
        const gen = await efed("generate", "--model", MODEL, "--ids", "1,2,3", "--max-tokens", "3", "--route", urls.join(","), "--wallet", walletFile, ...onChain(), "--channel-tokens", "100", ...relay);
        expect(gen.code).toBe(0);
        expect(gen.stderr).toContain(perGeneration); // 3 + 1 + 1 tokens on each server
      }
      const listed = JSON.parse((await efed("wallet", "channels", "--wallet", walletFile, ...onChain(), "--json")).stdout) as {
        channels: { channelId: string; server: string; cumulative: string; deposit: string }[];
      };
      expect(listed.channels.map((c) => [c.server, c.cumulative, c.deposit])).toEqual([
        [address("server1"), (10n * PRICE).toString(), (100n * PRICE).toString()],
        [address("server2"), (10n * PRICE).toString(), (100n * PRICE).toString()],
      ]);
      expect(await token.balanceOf(address("client"))).toBe(parseEther("10000") - 200n * PRICE); // the deposits are in the channels
      for (const c of listed.channels) expect((await channels.channel(c.channelId)).paid).toBe(0n); // under the threshold while serving

      for (const child of children) await stopProcess(child); // each server redeems everything on shutdown
      expect(children.map((c) => c.exitCode)).toEqual([0, 0]);
      for (const [i, c] of listed.channels.entries()) {
        expect((await channels.channel(c.channelId)).paid).toBe(10n * PRICE);
        const fee = (10n * PRICE * FEE_BPS) / 10_000n;
        expect((await token.balanceOf(address(SERVERS[i]!.who))) - serverBalances[i]!).toBe(10n * PRICE - fee);
      }
    }, 180_000);
  });
}
