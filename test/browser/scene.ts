import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { NonceManager, parseEther } from "ethers";
import { readManifest, variantIdOf } from "../../engine/model/manifest.js";
import type { ModelDirectory } from "../../engine/model/modelDir.js";
import { ModelRegistry__factory } from "../../types/ethers-contracts/index.js";
import { FAULT_FROM, SERVER_STAKE, type StakedServer, type VerifierChain } from "../node/verifier/chainHarness.js";
import { faultyShard } from "../../scripts/devnet/faultyShard.js";
import { startServer, type RunningServer } from "../node/support.js";

/**
 * The shipped model registered on the harness's chain as a second variant, served by staked
 * servers whose ranges `ranges` cover its layers: what a gateway with a tokenizer can route over
 * (the harness's own model is random and has none). The servers serve for free, as registered (price 0).
 */
export async function serveShippedModel(net: VerifierChain, model: ModelDirectory, scratch: string, ranges: readonly [number, number][]): Promise<{ variantId: string; servers: RunningServer[] }> {
  const manifest = readManifest(model.dir);
  if (manifest === undefined) throw new Error(`${model.dir} has no efed-manifest.json`);
  const variantId = variantIdOf(manifest);
  const registry = ModelRegistry__factory.connect(net.addresses.registry, net.admin);
  await (await registry.registerVariant(variantId, model.config.numLayers, "file://kjv-llama-6m")).wait();
  const servers: RunningServer[] = [];
  for (const [first, last] of ranges) {
    const running = await startServer(model, first, last, scratch, {}, variantId);
    servers.push(running);
    const signer = new NonceManager(running.wallet.connect(net.provider));
    await (await net.admin.sendTransaction({ to: running.wallet.address, value: parseEther("10") })).wait();
    await net.mint(running.wallet.address, SERVER_STAKE);
    const c = net.contractsFor(signer);
    await (await c.token.approve(net.addresses.staking, SERVER_STAKE)).wait();
    await (await c.staking.deposit(SERVER_STAKE)).wait();
    await (await c.staking.registerServer(variantId, first, last, running.server.url, 0n)).wait();
  }
  return { variantId, servers };
}

/**
 * What the dashboard tests watch on the harness's model: honest servers A (layers 0:2) and B (2:4),
 * and C (2:4), which adds noise from decode step 3 on; plus the deployment file the dashboard
 * reads (in `scratch`).
 */
export async function dashboardScene(net: VerifierChain, scratch: string): Promise<{ a: StakedServer; b: StakedServer; c: StakedServer; deploymentFile: string }> {
  const a = await net.stakedServer({ first: 0, last: 2 });
  const b = await net.stakedServer({ first: 2, last: 4 });
  const c = await net.stakedServer({ first: 2, last: 4, wrap: (shard) => faultyShard(shard, { kind: "noise", amplitude: 0.5 }, FAULT_FROM) });
  const deploymentFile = join(scratch, "deployment.json");
  writeFileSync(deploymentFile, JSON.stringify({ chainId: "31337", block: 0, contracts: net.addresses }));
  return { a, b, c, deploymentFile };
}
