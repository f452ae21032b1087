import { Wallet, ZeroAddress, hexlify, randomBytes, recoverAddress } from "ethers";
import { describe, expect, it } from "vitest";
import { ReceiptChecker, type ReceiptHop, type VerifiedReceipt } from "../../client/receiptChecker.js";
import { receiptDomain } from "../../protocol/eip712.js";
import { signReceiptWithKey } from "../../protocol/receipt.js";
import { MessageType, type StepReceipt } from "../../protocol/wire.js";

const domain = receiptDomain(31337n, ZeroAddress);
const wallets = [Wallet.createRandom(), Wallet.createRandom()];
const hops: ReceiptHop[] = wallets.map((w, i) => ({
  url: `ws://127.0.0.1:900${i}`,
  server: w.address,
  domain,
  firstLayer: 4 * i,
  lastLayer: 4 * i + 4,
  variantId: "0x" + "ab".repeat(32),
  sessionId: hexlify(randomBytes(32)),
}));
const h = (): string => hexlify(randomBytes(32));
/** Time allowed for signature recovery (the signer pool's worker starts on first use). */
const SETTLE_MS = 20_000;

/** Hop `i`'s signed receipt for `step` over the given hashes. */
function receipt(i: number, step: bigint, inputHash: string, outputHash: string, signer = wallets[i]!): StepReceipt {
  const hop = hops[i]!;
  const r = { ...hop, step, inputHash, outputHash, tokens: 1 };
  const signature = signReceiptWithKey(signer.signingKey, domain, {
    sessionId: r.sessionId,
    step,
    firstLayer: r.firstLayer,
    lastLayer: r.lastLayer,
    variantId: r.variantId,
    inputHash,
    outputHash,
    tokens: 1,
    server: hop.server,
  });
  return {
    type: MessageType.StepReceipt,
    requestId: 0,
    sessionId: hop.sessionId,
    step,
    signed: { server: hop.server, firstLayer: hop.firstLayer, lastLayer: hop.lastLayer, inputHash, outputHash, signature },
  };
}

describe("ReceiptChecker", () => {
  it("checks a forwarded step's receipts, whichever arrives first, and reports them in route order", async () => {
    const seen: VerifiedReceipt[] = [];
    const checker = new ReceiptChecker(hops, (r) => seen.push(r));
    const [a, b, c] = [h(), h(), h()];
    checker.arrive(1, receipt(1, 0n, b, c)); // the last hop's receipt first, then the output, then hop 0's
    checker.expect(0n, 1, [{ inputHash: a }, { outputHash: c }]);
    checker.arrive(0, receipt(0, 0n, a, b));
    await checker.settle(SETTLE_MS);
    expect(seen.map((r) => [r.receipt.server, r.receipt.inputHash, r.receipt.outputHash])).toEqual([
      [wallets[0]!.address, a, b],
      [wallets[1]!.address, b, c],
    ]);
  });

  it("fails when a hop's input is not the previous hop's output, naming both", async () => {
    const checker = new ReceiptChecker(hops, undefined);
    const [a, b, x, c] = [h(), h(), h(), h()];
    checker.expect(0n, 1, [{ inputHash: a }, { outputHash: c }]);
    checker.arrive(0, receipt(0, 0n, a, b));
    checker.arrive(1, receipt(1, 0n, x, c));
    await expect(checker.settle(SETTLE_MS)).rejects.toThrow(
      `${hops[1]!.url}: receipt for step 0 signs input hash ${x}, but the previous hop ${hops[0]!.url} signed output hash ${b}`,
    );
    expect(() => checker.throwIfFailed()).toThrow("signs input hash");
  });

  it("fails when the route's ends are not what the client sent and received", async () => {
    const checker = new ReceiptChecker(hops, undefined);
    const [a, b, c, other] = [h(), h(), h(), h()];
    checker.expect(0n, 1, [{ inputHash: a }, { outputHash: other }]);
    checker.arrive(0, receipt(0, 0n, a, b));
    checker.arrive(1, receipt(1, 0n, b, c));
    await expect(checker.settle(SETTLE_MS)).rejects.toThrow(
      `${hops[1]!.url}: receipt for step 0 signs output hash ${c}, but the client received activations hashing to ${other}`,
    );
  });

  it("fails on a receipt signed by another key, and on a missing receipt, naming the server", async () => {
    const forged = new ReceiptChecker(hops, undefined);
    const [a, b, c] = [h(), h(), h()];
    const impostor = Wallet.createRandom();
    forged.expect(0n, 1, [{ inputHash: a }, { outputHash: c }]);
    forged.arrive(0, receipt(0, 0n, a, b));
    forged.arrive(1, receipt(1, 0n, b, c, impostor));
    await expect(forged.settle(SETTLE_MS)).rejects.toThrow(`${hops[1]!.url}: receipt for step 0 is signed by ${impostor.address}, not the server`);

    const missing = new ReceiptChecker(hops, undefined);
    missing.expect(0n, 1, [{ inputHash: a }, { outputHash: c }]);
    missing.arrive(0, receipt(0, 0n, a, b));
    await expect(missing.settle(20)).rejects.toThrow(`server 2 of 2 on the route (${hops[1]!.url}) did not deliver its receipt for step 0 within 20 ms`);
  });

  it("compares hashes the moment a receipt arrives, before any signature is recovered", () => {
    const checker = new ReceiptChecker(hops, undefined);
    const [a, b, x, c] = [h(), h(), h(), h()];
    checker.expect(0n, 1, [{ inputHash: a }, { outputHash: c }]);
    checker.arrive(0, receipt(0, 0n, a, b));
    expect(() => checker.throwIfFailed()).not.toThrow();
    checker.arrive(1, receipt(1, 0n, x, c));
    expect(() => checker.throwIfFailed()).toThrow(expect.objectContaining({ name: "ReceiptError", step: 0n, url: hops[1]!.url }));
    // a receipt that arrives before the output is compared once the output comes
    const early = new ReceiptChecker(hops, undefined);
    early.arrive(0, receipt(0, 0n, x, b));
    expect(() => early.throwIfFailed()).not.toThrow();
    early.expect(0n, 1, [{ inputHash: a }, { outputHash: c }]);
    expect(() => early.throwIfFailed()).toThrow(`${hops[0]!.url}: receipt for step 0 signs input hash ${x}, but the client sent activations hashing to ${a}`);
  });

  it("waits for receipts and signatures up to the steps asked, and names a server whose receipt never comes", async () => {
    const checker = new ReceiptChecker(hops, undefined);
    const steps = [0, 1, 2].map(() => [h(), h(), h()]);
    for (const [i, [a, b, c]] of steps.entries()) {
      checker.expect(BigInt(i), 1, [{ inputHash: a! }, { outputHash: c! }]);
      checker.arrive(0, receipt(0, BigInt(i), a!, b!));
      if (i < 2) checker.arrive(1, receipt(1, BigInt(i), b!, c!));
    }
    await checker.waitFor(1n, 1n, SETTLE_MS); // steps 0 and 1 complete and verified
    await expect(checker.waitFor(2n, 0n, 20)).rejects.toMatchObject({
      name: "StepTimeoutError",
      message: `server 2 of 2 on the route (${hops[1]!.url}) did not deliver its receipt for step 2 within 20 ms`,
    });
  });

  it("beforeStep lets signature recovery lag by N steps, and no more: a bad signature at step k stops step k + N + 1", async () => {
    const N = 2;
    const K = 3;
    const impostor = Wallet.createRandom();
    // recoveries of step K and after wait until released: a slow recovery
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    const slow = async (digest: string, signature: string): Promise<string> => {
      const signer = recoverAddress(digest, signature);
      if (signer === impostor.address) await released;
      return signer;
    };
    const checker = new ReceiptChecker(hops, undefined, slow);
    const settled: bigint[] = [];
    for (let step = 0n; step <= BigInt(K + N); step++) {
      await checker.beforeStep(step, N, SETTLE_MS); // steps up to K + N may be sent
      const [a, b, c] = [h(), h(), h()];
      checker.expect(step, 1, [{ inputHash: a }, { outputHash: c }]);
      checker.arrive(0, receipt(0, step, a, b));
      checker.arrive(1, receipt(1, step, b, c, step >= BigInt(K) ? impostor : wallets[1]));
      settled.push(step);
    }
    expect(settled).toHaveLength(K + N + 1);
    // step K + N + 1 waits for step K's verification, which fails
    const next = checker.beforeStep(BigInt(K + N + 1), N, SETTLE_MS);
    release();
    await expect(next).rejects.toMatchObject({ name: "ReceiptError", step: BigInt(K), url: hops[1]!.url });
  });

  it("refuses a receipt for a step that was never sent, and a second receipt for a step", () => {
    const ahead = new ReceiptChecker(hops, undefined);
    ahead.arrive(0, receipt(0, 1n, h(), h())); // step 0 is the only one that can be in flight
    expect(() => ahead.throwIfFailed()).toThrow(`server 1 of 2 on the route (${hops[0]!.url}) sent a receipt for step 1, which was never sent`);
    const twice = new ReceiptChecker(hops, undefined);
    const [a, b] = [h(), h()];
    twice.arrive(0, receipt(0, 0n, a, b));
    twice.arrive(0, receipt(0, 0n, a, b));
    expect(() => twice.throwIfFailed()).toThrow(`server 1 of 2 on the route (${hops[0]!.url}) sent a second receipt for step 0`);
  });
});
