import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { formatEther, parseEther, type JsonRpcProvider } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EFedToken__factory, PaymentChannels__factory, type EFedToken, type PaymentChannels } from "../../types/ethers-contracts/index.js";
import { scratchDir } from "../engine/helpers.js";
import { startAnvil } from "../support/anvilNode.js";
import { stopProcess } from "../support/efedProcess.js";
import { startHardhatNode, type LocalChain } from "../support/hardhatNode.js";
import { SERVERS, SHIPPED_MODEL, address, runPricedServers, startPricedServers, type PricedServers } from "../support/pricedServers.js";

/**
 * The whole paid path as a user runs it, on two EVM implementations: deploy, register the shipped
 * model, stake and register two servers with `efed operator`, run them with `efed server`, pay a
 * forwarded and a relayed `efed generate` from an `efed wallet`, and check that what the CLI printed,
 * the wallet's channels and what each server redeemed on shutdown all agree, to the token.
 */
const PRICE = parseEther("0.001");
const FEE_BPS = 500n; // the devnet fee

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
    let token: EFedToken;
    let channels: PaymentChannels;
    let urls: string[];
    let efed: PricedServers["efed"];
    let onChain: () => string[];
    let serverBalances: bigint[];

    beforeAll(async () => {
      chain = await start();
      const servers = await startPricedServers(chain, scratch.dir);
      ({ provider, urls, efed, onChain } = servers);
      token = EFedToken__factory.connect(servers.contracts.token!, provider);
      channels = PaymentChannels__factory.connect(servers.contracts.channels!, provider);
      // the redeem threshold is never reached while serving
      serverBalances = await runPricedServers(servers, children, walletFile, ["--redeem-threshold", "1000000"]);
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
        const gen = await efed("generate", "--model", SHIPPED_MODEL, "--ids", "1,2,3", "--max-tokens", "3", "--route", urls.join(","), "--wallet", walletFile, ...onChain(), "--channel-tokens", "100", ...relay);
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
