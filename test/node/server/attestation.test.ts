import { join } from "node:path";
import { Wallet, ZeroAddress, hexlify, randomBytes } from "ethers";
import { afterAll, describe, expect, it } from "vitest";
import { Attestor } from "../../../node/server/attestation.js";
import { ActivationStore } from "../../../node/store/activationStore.js";
import { encodeActivations } from "../../../protocol/activations.js";
import { receiptDomain } from "../../../protocol/eip712.js";
import { receiptLeaf } from "../../../protocol/receipt.js";
import { chainOf, recoverReceiptChainSigner } from "../../../protocol/receiptChain.js";
import { ErrorCode } from "../../../protocol/wire.js";
import { scratchDir } from "../../engine/helpers.js";

const scratch = scratchDir();
afterAll(() => scratch.cleanup());

const wallet = Wallet.createRandom();
const domain = receiptDomain(31337n, ZeroAddress);
const VARIANT = "0x" + "ab".repeat(32);
const activations = (x: number) => encodeActivations(new Float32Array(8).fill(x), 1, 8, "fp32");

function attestor(store: ActivationStore, signEvery: number, onFailure?: (reason: string) => void): Attestor {
  return new Attestor({ signingKey: wallet.signingKey, address: wallet.address, domain, variantId: VARIANT, firstLayer: 2, lastLayer: 4, store, signEvery, flushMs: 60_000, ...(onFailure === undefined ? {} : { onFailure }) });
}

function openStore(name: string): ActivationStore {
  return ActivationStore.open(join(scratch.dir, `${name}.sqlite`), { retentionMs: 3_600_000, maxBytes: 1 << 20 });
}

describe("Attestor", () => {
  it("signs a session's receipt chain at the end of every run, after writing the run, and the rest at seal", () => {
    const store = openStore("runs");
    const a = attestor(store, 3);
    const session = hexlify(randomBytes(32));
    const sent = [0, 1, 2, 3, 4].map((i) => a.attest({ sessionId: session, step: BigInt(i) }, activations(i), activations(i + 1)));
    expect(sent.map((r) => r.chainSignature !== undefined)).toEqual([false, false, true, false, false]);
    // the run 0..2 was written before its signature left; 3 and 4 wait for the next run or the timer
    expect(store.count()).toBe(3);
    const leaves = [0, 1, 2, 3, 4].map((i) => receiptLeaf({ sessionId: session, step: BigInt(i), firstLayer: 2, lastLayer: 4, variantId: VARIANT, inputHash: sent[i]!.inputHash, outputHash: sent[i]!.outputHash, tokens: 1, server: wallet.address }));
    const head = { sessionId: session, server: wallet.address, lastStep: 2n, head: chainOf(leaves.slice(0, 3)) };
    expect(recoverReceiptChainSigner(domain, head, sent[2]!.chainSignature!)).toBe(wallet.address);
    const sealed = a.seal(session)!;
    expect(sealed.lastStep).toBe(4n);
    expect(recoverReceiptChainSigner(domain, { ...head, lastStep: 4n, head: chainOf(leaves) }, sealed.signature)).toBe(wallet.address);
    expect(store.count()).toBe(5);
    // nothing new since: nothing to sign; an unknown session neither
    expect(a.seal(session)).toBeUndefined();
    expect(a.seal(hexlify(randomBytes(32)))).toBeUndefined();
    store.close();
  });

  it("a step that finishes after its session was forgotten is stored, and its receipt goes out unsigned", () => {
    const store = openStore("forgotten");
    const a = attestor(store, 1);
    const session = hexlify(randomBytes(32));
    expect(a.attest({ sessionId: session, step: 0n }, activations(0), activations(1)).chainSignature).toBeDefined();
    a.forget(session);
    expect(a.attest({ sessionId: session, step: 1n }, activations(1), activations(2)).chainSignature).toBeUndefined();
    a.flush();
    expect(store.count()).toBe(2);
    store.close();
  });

  it("fails for good when a run cannot be written: told once, and every later step refused with the reason", () => {
    const store = openStore("failing");
    const failures: string[] = [];
    const a = attestor(store, 2, (reason) => failures.push(reason));
    const session = hexlify(randomBytes(32));
    a.attest({ sessionId: session, step: 0n }, activations(0), activations(1));
    store.close(); // the disk went away
    expect(() => a.attest({ sessionId: session, step: 1n }, activations(1), activations(2))).toThrow(
      expect.objectContaining({ wireCode: ErrorCode.StoreFailed, message: expect.stringContaining(`writing 2 step(s) from step 0 of session ${session} failed`) }),
    );
    expect(failures).toHaveLength(1);
    expect(a.failed).toBe(failures[0]);
    expect(() => a.check(1, 8)).toThrow(`server cannot record receipts, so it takes no steps: ${failures[0]}`);
    expect(() => a.flush()).toThrow("server cannot record receipts");
    expect(failures).toHaveLength(1);
  });

  it("counts the steps not yet written against the store's room", () => {
    const store = ActivationStore.open(join(scratch.dir, "room.sqlite"), { retentionMs: 3_600_000, maxBytes: 3 * 64 - 1 }); // a step of 1 row holds 64 bytes (input and output)
    const a = attestor(store, 16);
    const session = hexlify(randomBytes(32));
    a.check(1, 8);
    for (let i = 0; i < 2; i++) a.attest({ sessionId: session, step: BigInt(i) }, activations(i), activations(i + 1));
    expect(store.count()).toBe(0); // both wait in memory: 128 bytes, and a third step would not fit beside them
    expect(() => a.check(1, 8)).toThrow(expect.objectContaining({ wireCode: ErrorCode.StoreFailed, message: expect.stringContaining("receipt store is full") }));
    store.close();
  });
});
