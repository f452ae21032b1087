/** bench:network's CPU-per-hop part: what a hop costs outside the layers, item by item, in this process. */
import { join } from "node:path";
import { SigningKey, ZeroAddress, computeAddress, hexlify, randomBytes } from "ethers";
import { activationHash, decodeActivations, encodeActivations } from "../../../protocol/activations.js";
import { receiptDomain } from "../../../protocol/eip712.js";
import { receiptLeaf, type Receipt } from "../../../protocol/receipt.js";
import { ReceiptChainState, recoverReceiptChainSigner, signReceiptChain } from "../../../protocol/receiptChain.js";
import { DEFAULT_SIGN_EVERY } from "../../../node/server/attestation.js";
import { MessageType, decodeMessage, encodeMessage, type Step, type StepReceipt, type StepResult } from "../../../protocol/wire.js";
import { median } from "../lib/stats.js";
import type { HopCpu } from "./types.js";

/** Median µs of `f` over `n` calls (after a few warm-up calls). */
export function microseconds(n: number, f: () => void): number {
  for (let i = 0; i < 5; i++) f();
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const a = performance.now();
    f();
    xs.push((performance.now() - a) * 1000);
  }
  return median(xs);
}

/**
 * CPU a hop spends outside the layers for one fp32 decode step, measured in this process with the
 * same functions the server and client call: frame encode/decode on both sides, the four activation
 * hashes (server: input and output for the receipt; client: the same to check it), the receipt's
 * leaf and its step of the session's receipt chain (both sides), the chain's signing and signature
 * recovery (protocol/secp256k1.ts, on the backend this process loaded) and the SQLite insert of the
 * activations (one transaction per run), the last three per step of a run of the server's default
 * DEFAULT_SIGN_EVERY steps.
 */
export async function hopCpu(hiddenSize: number, storeDir: string): Promise<HopCpu> {
  // node:sqlite prints an "experimental" warning when loaded; bin/efed.mjs silences it the same way
  const emitWarning = process.emitWarning.bind(process);
  process.emitWarning = ((warning: string | Error, ...rest: never[]) => {
    if (!String(warning).includes("SQLite is an experimental feature")) emitWarning(warning, ...rest);
  }) as typeof process.emitWarning;
  const { ActivationStore } = await import("../../../node/store/activationStore.js");
  const key = new SigningKey(hexlify(randomBytes(32)));
  const domain = receiptDomain(0n, ZeroAddress);
  const values = Float32Array.from({ length: hiddenSize }, (_, i) => Math.sin(i));
  const input = encodeActivations(values, 1, hiddenSize, "fp32");
  const output = encodeActivations(values.map((v) => v * 0.5), 1, hiddenSize, "fp32");
  const sessionId = hexlify(randomBytes(32));
  const address = computeAddress(key.publicKey);
  const receipt: Receipt = {
    sessionId,
    step: 7n,
    firstLayer: 0,
    lastLayer: 4,
    variantId: hexlify(randomBytes(32)),
    inputHash: activationHash(input),
    outputHash: activationHash(output),
    tokens: 1,
    server: address,
  };
  const chain = new ReceiptChainState(sessionId, address);
  chain.append(0n, receiptLeaf({ ...receipt, step: 0n }));
  const signature = signReceiptChain(key, domain, chain.current());
  const step: Step = { type: MessageType.Step, requestId: 1, sessionId, step: 7n, position: 20, outputEncoding: "fp32", input, route: [] };
  const result: StepResult = {
    type: MessageType.StepResult,
    requestId: 1,
    sessionId,
    step: 7n,
    output,
  };
  const receiptFrame: StepReceipt = {
    type: MessageType.StepReceipt,
    requestId: 1,
    sessionId,
    step: 7n,
    signed: { server: address, firstLayer: 0, lastLayer: 4, inputHash: receipt.inputHash, outputHash: receipt.outputHash, chainSignature: signature },
  };
  const frames = microseconds(500, () => {
    decodeActivations((decodeMessage(encodeMessage(step)) as Step).input);
    decodeActivations((decodeMessage(encodeMessage(result)) as StepResult).output);
    decodeMessage(encodeMessage(receiptFrame));
    encodeActivations(values, 1, hiddenSize, "fp32");
    encodeActivations(values, 1, hiddenSize, "fp32");
  });
  const hashes = microseconds(500, () => {
    for (let i = 0; i < 2; i++) {
      activationHash(input);
      activationHash(output);
    }
  });
  // the server's chain and the client's copy of it, one step each
  const sides = [chain, new ReceiptChainState(sessionId, address)];
  sides[1]!.append(0n, receiptLeaf({ ...receipt, step: 0n }));
  let next = 1n;
  const leaves = microseconds(500, () => {
    for (const side of sides) side.append(next, receiptLeaf({ ...receipt, step: next }));
    next++;
  });
  const K = DEFAULT_SIGN_EVERY;
  const sign = microseconds(200, () => signReceiptChain(key, domain, chain.current())) / K;
  const recover = microseconds(200, () => recoverReceiptChainSigner(domain, chain.current(), signReceiptChain(key, domain, chain.current()))) / K - sign;
  const store = ActivationStore.open(join(storeDir, `hop-cpu-${hiddenSize}.sqlite`), { retentionMs: 3600_000, maxBytes: 1024 ** 3 });
  let n = 0;
  const run = () => Array.from({ length: K }, () => ({ receipt: { ...receipt, step: BigInt(n++) }, input, output, createdAtMs: Date.now() }));
  const storeUs = microseconds(60, () => store.putAll(run())) / K;
  store.close();
  return { frames, hashes, leaves, sign, recover, store: storeUs, signEvery: K };
}
