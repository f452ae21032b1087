import { execFile, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { JsonRpcProvider, NonceManager, Wallet, hexlify, keccak256, parseEther, toBeHex, toUtf8Bytes } from "ethers";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildManifest, writeManifest } from "../../../engine/model/manifest.js";
import { ModelDirectory } from "../../../engine/model/modelDir.js";
import { tinyConfig, writeRandomModel } from "../../../engine/model/randomModel.js";
import { Head } from "../../../engine/runtime/head.js";
import { receiptDomain } from "../../../protocol/eip712.js";
import { activationHash } from "../../../protocol/activations.js";
import { MerkleTree, verifyMerkleProof } from "../../../protocol/merkle.js";
import { receiptLeaf, recoverReceiptSigner } from "../../../protocol/receipt.js";
import { generate } from "../../../client/generate.js";
import { RemotePipeline, type VerifiedReceipt } from "../../../client/remotePipeline.js";
import { ShardConnection } from "../../../client/shardClient.js";
import { Committer } from "../../../node/chain/committer.js";
import { ActivationStore, type StoredStep } from "../../../node/store/activationStore.js";
import { encodeActivations } from "../../../protocol/activations.js";
import type { Receipt } from "../../../protocol/receipt.js";
import { Commitments__factory, EFedToken__factory, ModelRegistry__factory, Staking__factory } from "../../../types/ethers-contracts/index.js";
import { scratchDir } from "../../engine/helpers.js";
import { startHardhatNode, type LocalChain } from "../../support/hardhatNode.js";
import { EFED_BIN as bin, spawnEfedServer, stopProcess } from "../../support/efedProcess.js";

const run = promisify(execFile);
const root = new URL("../../..", import.meta.url).pathname;
// Hardhat's well-known development accounts #1 and #2 (public test keys, funded only on local nodes).
const SERVER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const VERIFIER_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
const scratch = scratchDir();
const modelDir = join(scratch.dir, "tiny");
let chain: LocalChain;
let contracts: Record<string, string>;
let variantId: string;
const children: ChildProcess[] = [];

const startServer = (args: string[]) => spawnEfedServer(args, children);

beforeAll(async () => {
  writeRandomModel(modelDir, tinyConfig(), { seed: 5, dtype: "F32", std: 0.15 });
  const model = ModelDirectory.open(modelDir);
  variantId = writeManifest(modelDir, buildManifest(model));
  chain = await startHardhatNode();
  const server = new Wallet(SERVER_KEY);
  await run(process.execPath, ["--import", "tsx", join(root, "scripts/deploy.ts"), "--rpc", chain.url, "--out-dir", scratch.dir, "--mint-to", `${server.address},${new Wallet(VERIFIER_KEY).address}`], {
    cwd: root,
  });
  contracts = (JSON.parse(readFileSync(join(scratch.dir, "31337.json"), "utf8")) as { contracts: Record<string, string> }).contracts;
}, 120_000);

afterAll(async () => {
  await Promise.all(children.map((c) => stopProcess(c)));
  await chain.stop();
  scratch.cleanup();
});

describe("efed server on a chain", () => {
  it("refuses to start when the registry does not know its variant", async () => {
    writeFileSync(join(scratch.dir, "server.key"), SERVER_KEY);
    const r = await run(process.execPath, [
      bin, "server", "--model", modelDir, "--layers", "0:4", "--rpc", chain.url, "--deployment", join(scratch.dir, "31337.json"), "--key", join(scratch.dir, "server.key"),
    ]).catch((e: unknown) => e as { stderr: string; code: number });
    expect(r).toMatchObject({ code: 1 });
    expect((r as { stderr: string }).stderr).toContain(`variant ${variantId} of ${modelDir} is not registered (or is retired) on chain 31337`);
  });

  it("stakes, registers its endpoint, serves, and commits receipts that verify on chain", async () => {
    const provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true });
    const admin = await provider.getSigner(0);
    await (await ModelRegistry__factory.connect(contracts.registry!, admin).registerVariant(variantId, 4, "file://tiny")).wait();

    const { url, address } = await startServer([
      "--model", modelDir, "--layers", "0:4", "--rpc", chain.url, "--deployment", join(scratch.dir, "31337.json"),
      "--key", join(scratch.dir, "server.key"), "--stake", "2000", "--price", "0", "--port", "0", "--store", join(scratch.dir, "chain.sqlite"),
      "--commit-every-seconds", "1",
    ]);
    const staking = Staking__factory.connect(contracts.staking!, provider);
    const [info] = await staking.servers(variantId, 0, 10);
    expect([info?.operator, info?.firstLayer, info?.lastLayer, info?.endpoint, info?.pricePerToken, info?.stake]).toEqual([
      address, 0n, 4n, url, 0n, parseEther("2000"), // free: a priced server is paid per step (test/integration/payments.test.ts)
    ]);

    const model = ModelDirectory.open(modelDir);
    const receipts: VerifiedReceipt[] = [];
    const pipeline = await RemotePipeline.connect([url], 4, { onReceipt: (r) => receipts.push(r) });
    await generate(await Head.load(model), pipeline, [1, 2, 3], { maxTokens: 6, temperature: 0 });
    pipeline.close();
    expect(receipts.length).toBe(6);
    const domain = receiptDomain(31337n, contracts.commitments!);
    for (const r of receipts) expect(recoverReceiptSigner(domain, r.receipt, r.signature)).toBe(address);

    // wait for the committer to post them: one batch, or several when a post fell inside the generation
    // (it commits every second), each holding the next receipts in the order they were served
    const commitments = Commitments__factory.connect(contracts.commitments!, provider);
    const postedBatches = async (): Promise<bigint[]> => commitments.serverBatchIds(address, 0, await commitments.serverBatchCount(address));
    const committed = async (): Promise<bigint> => {
      let total = 0n;
      for (const id of await postedBatches()) total += (await commitments.batch(id)).receiptCount;
      return total;
    };
    for (let i = 0; i < 100 && (await committed()) < 6n; i++) await new Promise((r) => setTimeout(r, 200));
    expect(await committed()).toBe(6n);
    expect(receipts.reduce((sum, r) => sum + r.receipt.tokens, 0)).toBe(8); // a 3-token prefill + 5 decode steps
    let next = 0;
    const batchOf: { batchId: bigint; root: string }[] = []; // by receipt index
    for (const batchId of await postedBatches()) {
      const batch = await commitments.batch(batchId);
      // the batch is bound to the registration the server made at start: its variant and layers
      expect([batch.registrationId, batch.firstLayer, batch.lastLayer]).toEqual([1n, 0n, 4n]);
      expect(await commitments.batchVariant(batchId)).toBe(variantId);
      expect(batch.challengeDeadline).toBe(batch.postedAt + 3600n); // the devnet challenge window
      const held = receipts.slice(next, next + Number(batch.receiptCount));
      next += held.length;
      batchOf.push(...held.map(() => ({ batchId, root: batch.root })));
      const tree = new MerkleTree(held.map((r) => receiptLeaf(r.receipt)));
      expect(batch.root).toBe(tree.root);
      for (let i = 0; i < held.length; i++) {
        expect(await commitments.verifyReceipt(batchId, held[i]!.receipt, tree.proof(i))).toBe(true);
      }
    }

    // a stranger holding a receipt's leaf is refused the step behind it (the activations are the client's data)
    const verifier = await ShardConnection.connect(url);
    await expect(verifier.fetchStep(receiptLeaf(receipts[0]!.receipt))).rejects.toMatchObject({
      code: "SERVER_18",
      message: expect.stringContaining("fetching a step needs the session owner's proof, or a connection authenticated as a registered verifier"),
    });
    // a wallet that is not a registered verifier cannot authenticate; once registered on chain it can
    const verifierWallet = new Wallet(VERIFIER_KEY, provider);
    const tooEarly = await ShardConnection.connect(url);
    await expect(tooEarly.authenticate(verifierWallet.signingKey, verifierWallet.address)).rejects.toMatchObject({
      code: "SERVER_18",
      message: expect.stringContaining(`${verifierWallet.address} is not a registered verifier`),
    });
    tooEarly.close(); // the server closes a connection after a failed authentication anyway
    const verifierStake = (await staking.stakeParams()).verifierMinStake;
    const verifierSigner = new NonceManager(verifierWallet); // back-to-back transactions must not reuse a cached nonce
    await (await EFedToken__factory.connect(contracts.token!, verifierSigner).approve(contracts.staking!, verifierStake)).wait();
    const verifierStaking = Staking__factory.connect(contracts.staking!, verifierSigner);
    await (await verifierStaking.deposit(verifierStake)).wait();
    await (await verifierStaking.registerVerifier()).wait();
    await verifier.authenticate(verifierWallet.signingKey, verifierWallet.address);
    // the registered verifier fetches each step, with its proof against the posted root
    for (const [i, r] of receipts.entries()) {
      const { batchId, root } = batchOf[i]!;
      const leaf = receiptLeaf(r.receipt);
      const stored = await verifier.fetchStep(leaf);
      expect(stored.receipt).toEqual(r.receipt);
      expect(stored.signature).toBe(r.signature);
      expect(activationHash(stored.input)).toBe(r.receipt.inputHash);
      expect(activationHash(stored.output)).toBe(r.receipt.outputHash);
      expect(stored.batch?.batchId).toBe(batchId);
      expect(verifyMerkleProof(root, leaf, stored.batch!.proof)).toBe(true);
      expect(await commitments.verifyReceipt(batchId, stored.receipt, stored.batch!.proof)).toBe(true);
    }
    const unknown = "0x" + "00".repeat(32);
    await expect(verifier.fetchStep(unknown)).rejects.toMatchObject({
      code: "SERVER_19",
      message: expect.stringContaining(`no stored step has receipt leaf ${unknown}`),
    });
    verifier.close();
    provider.destroy();
  });

  it("the committer posts only receipts of the server's current registration and skips an earlier one's", async () => {
    const provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true });
    const admin = await provider.getSigner(0);
    // Hardhat's well-known development account #3 (a public test key, funded only on local nodes);
    // #2 is the verifier of the test above.
    const operator = new NonceManager(new Wallet("0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6", provider));
    const address = await operator.getAddress();
    const variant = keccak256(toUtf8Bytes("committer test variant"));
    await (await ModelRegistry__factory.connect(contracts.registry!, admin).registerVariant(variant, 8, "file://committer")).wait();
    const stakeAmount = parseEther("2000");
    await (await EFedToken__factory.connect(contracts.token!, admin).mint(address, stakeAmount)).wait();
    await (await EFedToken__factory.connect(contracts.token!, operator).approve(contracts.staking!, stakeAmount)).wait();
    const staking = Staking__factory.connect(contracts.staking!, operator);
    await (await staking.deposit(stakeAmount)).wait();
    await (await staking.registerServer(variant, 2, 4, "ws://127.0.0.1:1", 1n)).wait();
    await (await staking.registerServer(variant, 0, 2, "ws://127.0.0.1:1", 1n)).wait(); // the [2, 4) registration ended

    const store = ActivationStore.open(join(scratch.dir, "committer.sqlite"), { retentionMs: 3_600_000, maxBytes: 1 << 20 });
    const a = encodeActivations(new Float32Array(4).fill(1), 1, 4, "fp16");
    const step = (i: number, first: number, last: number): StoredStep => {
      const receipt: Receipt = {
        sessionId: keccak256(toUtf8Bytes("committer session")),
        step: BigInt(i),
        firstLayer: first,
        lastLayer: last,
        variantId: variant,
        inputHash: keccak256(toBeHex(2 * i + 1, 32)),
        outputHash: keccak256(toBeHex(2 * i + 2, 32)),
        tokens: 1,
        server: address,
      };
      return { receipt, signature: hexlify(new Uint8Array(65).fill(1)), input: a, output: a, createdAtMs: Date.now() - 10_000 + i };
    };
    const stale = [0, 1].map((i) => store.put(step(i, 2, 4)));
    const current = [2, 3, 4].map((i) => store.put(step(i, 0, 2)));
    const commitments = Commitments__factory.connect(contracts.commitments!, operator);
    const committer = new Committer({ commitments, store, maxReceiptsPerBatch: 100, logger: pino({ level: "silent" }) });

    const batchId = await committer.commitOnce();
    const batch = await commitments.batch(batchId!);
    expect([batch.server, batch.receiptCount, batch.firstLayer, batch.lastLayer, batch.root]).toEqual([
      address, 3n, 0n, 2n, new MerkleTree(current).root,
    ]);
    expect(store.uncommitted(100).map((s) => receiptLeaf(s.receipt))).toEqual(stale);
    // only receipts of the ended registration are left: nothing to post, and no failing retry
    expect(await committer.commitOnce()).toBeUndefined();
    expect(await commitments.serverBatchCount(address)).toBe(1n);
    store.close();
    provider.destroy();
  });
});
