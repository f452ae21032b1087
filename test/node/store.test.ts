import { join } from "node:path";
import { Wallet, hexlify, keccak256, toBeHex } from "ethers";
import { afterAll, describe, expect, it } from "vitest";
import { encodeActivations } from "../../protocol/activations.js";
import { receiptLeaf, type Receipt } from "../../protocol/receipt.js";
import { ActivationStore, type StoredStep } from "../../node/store/activationStore.js";
import { generate } from "../../client/generate.js";
import { RemotePipeline, type VerifiedReceipt } from "../../client/remotePipeline.js";
import { Head } from "../../engine/runtime/head.js";
import { randomModel, scratchDir } from "../engine/helpers.js";
import { startServer } from "./support.js";

const scratch = scratchDir();
afterAll(() => scratch.cleanup());
const server = Wallet.createRandom().address;

function step(i: number, createdAtMs: number, cols = 8): StoredStep {
  const receipt: Receipt = {
    sessionId: keccak256(toBeHex(1, 32)),
    step: BigInt(i),
    firstLayer: 0,
    lastLayer: 2,
    variantId: keccak256("0x01"),
    inputHash: keccak256(toBeHex(2 * i + 1, 32)),
    outputHash: keccak256(toBeHex(2 * i + 2, 32)),
    tokens: 1,
    server,
  };
  const a = encodeActivations(new Float32Array(cols).fill(i), 1, cols, "fp16");
  return { receipt, signature: hexlify(new Uint8Array(65).fill(i)), input: a, output: a, createdAtMs };
}

describe("ActivationStore", () => {
  it("stores steps by receipt leaf and gives them back exactly", () => {
    const store = ActivationStore.open(join(scratch.dir, "a.sqlite"), { retentionMs: 1000, maxBytes: 1 << 20 });
    const s = step(3, 1000);
    const leaf = store.put(s);
    expect(leaf).toBe(receiptLeaf(s.receipt));
    expect(store.get(leaf)).toEqual(s);
    expect(store.get(keccak256("0x99"))).toBeUndefined();
    store.close();
  });

  it("tracks what is committed and rebuilds a batch's leaves", () => {
    const store = ActivationStore.open(join(scratch.dir, "b.sqlite"), { retentionMs: 10_000, maxBytes: 1 << 20 });
    const leaves = [0, 1, 2, 3].map((i) => store.put(step(i, 100 + i)));
    expect(store.uncommitted(10).map((s) => receiptLeaf(s.receipt))).toEqual(leaves);
    store.markCommitted(7, keccak256("0x07"), leaves.slice(0, 3), 200);
    expect(store.uncommitted(10).map((s) => receiptLeaf(s.receipt))).toEqual([leaves[3]]);
    expect(store.batchLeaves(7)).toEqual(leaves.slice(0, 3));
    expect(store.batchLeaves(8)).toBeUndefined();
    store.close();
  });

  it("drops steps past retention, then the oldest over the byte budget", () => {
    const store = ActivationStore.open(join(scratch.dir, "c.sqlite"), { retentionMs: 1000, maxBytes: 100 * 2 * 16 });
    for (let i = 0; i < 200; i++) store.put(step(i, 10 * i));
    expect(store.prune(2000)).toBe(100); // steps 0..99 are older than 1000 ms at t=2000; the rest fit
    expect(store.count()).toBe(100);
    expect(store.prune(2000)).toBe(0);
    const tight = ActivationStore.open(join(scratch.dir, "d.sqlite"), { retentionMs: 1e9, maxBytes: 10 * 2 * 16 });
    for (let i = 0; i < 200; i++) tight.put(step(i, i));
    tight.prune(300);
    expect(tight.bytes()).toBeLessThanOrEqual(10 * 2 * 16);
    expect(tight.get(receiptLeaf(step(199, 0).receipt))).toBeDefined(); // the newest survive
    expect(tight.get(receiptLeaf(step(0, 0).receipt))).toBeUndefined();
    store.close();
    tight.close();
  });

  it("a server restarted on the same store still has every receipt it returned", async () => {
    const model = randomModel(scratch.dir, "restart");
    const running = await startServer(model, 0, model.config.numLayers, scratch.dir);
    const receipts: VerifiedReceipt[] = [];
    const pipeline = await RemotePipeline.connect([running.server.url], model.config.numLayers, { onReceipt: (r) => receipts.push(r) });
    await generate(await Head.load(model), pipeline, [1, 2], { maxTokens: 5, temperature: 0 });
    pipeline.close();
    const path = running.store.path;
    await running.stop();
    const reopened = ActivationStore.open(path, { retentionMs: 3_600_000, maxBytes: 1 << 30 });
    expect(receipts.length).toBe(5);
    for (const r of receipts) expect(reopened.get(receiptLeaf(r.receipt))?.signature).toBe(r.signature);
    reopened.close();
  });
});
