import { join } from "node:path";
import { Wallet, keccak256, toBeHex } from "ethers";
import { afterAll, describe, expect, it } from "vitest";
import { encodeActivations } from "../../../protocol/activations.js";
import { receiptLeaf, type Receipt } from "../../../protocol/receipt.js";
import { ActivationStore, type StoredStep } from "../../../node/store/activationStore.js";
import { generate } from "../../../client/generate.js";
import { RemotePipeline, type VerifiedReceipt } from "../../../client/remotePipeline.js";
import { Head } from "../../../engine/runtime/head.js";
import { randomModel, scratchDir } from "../../engine/helpers.js";
import { startServer } from "../support.js";

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
  return { receipt, input: a, output: a, createdAtMs };
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

  it("never prunes a posted batch inside its protection, by age or by bytes; prunes it once the protection ends", () => {
    const store = ActivationStore.open(join(scratch.dir, "e.sqlite"), { retentionMs: 1000, maxBytes: 4 * 2 * 16 });
    const leaves = [0, 1, 2, 3, 4, 5].map((i) => store.put(step(i, i)));
    store.markCommitted(1, keccak256("0x01"), leaves.slice(0, 3), 10, 5000); // protected until t = 5000
    expect(store.bytes()).toBe(6 * 2 * 16);
    // at t = 2000 every step is past retention, but the batch's three are inside their challenge window
    expect(store.prune(2000)).toBe(3);
    expect(leaves.map((l) => store.get(l) !== undefined)).toEqual([true, true, true, false, false, false]);
    // over the byte budget: the oldest unprotected steps go, just enough of them
    for (let i = 6; i < 9; i++) store.put(step(i, 2000));
    expect(store.prune(2001)).toBe(2); // 6 steps (192 bytes) → 4 (128)
    expect(leaves.slice(0, 3).every((l) => store.get(l) !== undefined)).toBe(true);
    expect(store.get(receiptLeaf(step(8, 0).receipt))).toBeDefined();
    expect(store.hasRoomFor(2 * 16)).toBe(false);
    store.put(step(9, 2001));
    expect(store.prune(2002)).toBe(1); // step 8 goes; the protected three stay however old
    expect(store.count()).toBe(4);
    // the protection ends: the batch's steps go with retention, and its record with them
    expect(store.prune(5001)).toBe(4);
    expect(store.count()).toBe(0);
    expect(store.batchLeaves(1)).toBeUndefined();
    expect(store.bytes()).toBe(0);
    store.close();
  });

  it("is full when only protected steps are left over the budget", () => {
    const store = ActivationStore.open(join(scratch.dir, "g.sqlite"), { retentionMs: 1000, maxBytes: 2 * 2 * 16 });
    const leaves = [0, 1, 2].map((i) => store.put(step(i, i)));
    store.markCommitted(1, keccak256("0x01"), leaves, 10, 5000);
    expect(store.prune(100)).toBe(0);
    expect(store.bytes()).toBe(3 * 2 * 16);
    expect(store.hasRoomFor(1)).toBe(false);
    store.close();
  });

  it("writes a run of steps in one transaction: all of them, or none and the bytes held unchanged", () => {
    const store = ActivationStore.open(join(scratch.dir, "run.sqlite"), { retentionMs: 1000, maxBytes: 1 << 20 });
    const run = [0, 1, 2].map((i) => step(i, 1000));
    store.putAll(run, run.map((s) => receiptLeaf(s.receipt)));
    expect(run.map((s) => store.get(receiptLeaf(s.receipt)))).toEqual(run);
    const held = store.bytes();
    const failing = [step(3, 1000), step(1, 1000)]; // step 1 is stored already: its leaf is taken
    expect(() => store.putAll(failing)).toThrow("UNIQUE constraint failed: steps.leaf");
    expect(store.get(receiptLeaf(failing[0]!.receipt))).toBeUndefined();
    expect([store.count(), store.bytes()]).toEqual([3, held]);
    store.close();
  });

  it("keeps a session's key so its owner can fetch, and never takes a session id twice", () => {
    const store = ActivationStore.open(join(scratch.dir, "f.sqlite"), { retentionMs: 1000, maxBytes: 1 << 20 });
    const id = keccak256("0x05");
    expect(store.putSessionKey(id, keccak256("0x06"), 10)).toBe(true);
    expect(store.putSessionKey(id, keccak256("0x07"), 20)).toBe(false);
    expect(store.sessionKey(id)).toBe(keccak256("0x06"));
    store.prune(2000); // keys go with retention
    expect(store.sessionKey(id)).toBeUndefined();
    store.close();
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
    for (const r of receipts) expect(reopened.get(receiptLeaf(r.receipt))?.receipt).toEqual(r.receipt);
    reopened.close();
  });
});
