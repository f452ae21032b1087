import { Wallet, ZeroAddress, hexlify, randomBytes, type HDNodeWallet } from "ethers";
import { describe, expect, it } from "vitest";
import { ReceiptChecker, type ReceiptHop, type VerifiedReceipt } from "../../client/receiptChecker.js";
import { receiptDomain } from "../../protocol/eip712.js";
import { receiptLeaf } from "../../protocol/receipt.js";
import { ReceiptChainState, chainOf, recoverReceiptChainSigner, signReceiptChain, type ReceiptChainHead } from "../../protocol/receiptChain.js";
import { MessageType, type StepReceipt } from "../../protocol/wire.js";

const domain = receiptDomain(31337n, ZeroAddress);
const wallets = [Wallet.createRandom(), Wallet.createRandom()];
/** A route of two servers; the second signs every `signEvery` steps (the first after every step). */
function route(signEvery = 1): ReceiptHop[] {
  return wallets.map((w, i) => ({
    url: `ws://127.0.0.1:900${i}`,
    server: w.address,
    domain,
    firstLayer: 4 * i,
    lastLayer: 4 * i + 4,
    variantId: "0x" + "ab".repeat(32),
    sessionId: hexlify(randomBytes(32)),
    signEvery: i === 0 ? 1 : signEvery,
  }));
}
const hops = route();
const h = (): string => hexlify(randomBytes(32));
const SETTLE_MS = 20_000;

/** The server side of a hop: extends its chain with each receipt and signs at the end of each run (as node/server/attestation.ts). */
class Server {
  readonly chain: ReceiptChainState;
  constructor(
    readonly hop: ReceiptHop,
    readonly wallet: HDNodeWallet,
  ) {
    this.chain = new ReceiptChainState(hop.sessionId, hop.server);
  }

  /** The receipt of `step`; signed by `signer` at the end of a run (or always, or never, as `sign` says). */
  receipt(step: bigint, inputHash: string, outputHash: string, o: { signer?: HDNodeWallet; sign?: boolean } = {}): StepReceipt {
    const hop = this.hop;
    const leaf = receiptLeaf({ sessionId: hop.sessionId, step, firstLayer: hop.firstLayer, lastLayer: hop.lastLayer, variantId: hop.variantId, inputHash, outputHash, tokens: 1, server: hop.server });
    this.chain.append(step, leaf);
    const sign = o.sign ?? (step + 1n) % BigInt(hop.signEvery) === 0n;
    const signed = { server: hop.server, firstLayer: hop.firstLayer, lastLayer: hop.lastLayer, inputHash, outputHash };
    const chainSignature = sign ? this.sign(o.signer) : undefined;
    return { type: MessageType.StepReceipt, requestId: 0, sessionId: hop.sessionId, step, signed: chainSignature === undefined ? signed : { ...signed, chainSignature } };
  }

  /** What closing the session gives: the signature over the chain through its last step. */
  close(signer?: HDNodeWallet): { lastStep: bigint; signature: string } {
    return { lastStep: this.chain.lastStep, signature: this.sign(signer) };
  }

  private sign(signer = this.wallet): string {
    return signReceiptChain(signer.signingKey, domain, this.chain.current());
  }
}

const servers = (r: ReceiptHop[]): Server[] => r.map((hop, i) => new Server(hop, wallets[i]!));

describe("ReceiptChecker", () => {
  it("checks a forwarded step's receipts, whichever arrives first, and reports them in route order with the chain that covers them", async () => {
    const seen: VerifiedReceipt[] = [];
    const checker = new ReceiptChecker(hops, (r) => seen.push(r));
    const [s0, s1] = servers(hops);
    const [a, b, c] = [h(), h(), h()];
    checker.arrive(1, s1!.receipt(0n, b, c)); // the last hop's receipt first, then the output, then hop 0's
    checker.expect(0n, 1, [{ inputHash: a }, { outputHash: c }]);
    checker.arrive(0, s0!.receipt(0n, a, b));
    await checker.settle(SETTLE_MS);
    expect(seen.map((r) => [r.receipt.server, r.receipt.inputHash, r.receipt.outputHash, r.chain.lastStep, r.chain.head])).toEqual([
      [wallets[0]!.address, a, b, 0n, s0!.chain.head],
      [wallets[1]!.address, b, c, 0n, s1!.chain.head],
    ]);
    // the chain is the one protocol/receiptChain.ts defines: keccak256(0 ‖ leaf of step 0)
    expect(seen[0]!.chain.head).toBe(chainOf([receiptLeaf(seen[0]!.receipt)]));
    expect(recoverReceiptChainSigner(domain, seen[1]!.chain, seen[1]!.chain.signature)).toBe(wallets[1]!.address);
  });

  it("fails when a hop's input is not the previous hop's output, naming both", async () => {
    const checker = new ReceiptChecker(hops, undefined);
    const [s0, s1] = servers(hops);
    const [a, b, x, c] = [h(), h(), h(), h()];
    checker.expect(0n, 1, [{ inputHash: a }, { outputHash: c }]);
    checker.arrive(0, s0!.receipt(0n, a, b));
    checker.arrive(1, s1!.receipt(0n, x, c));
    await expect(checker.settle(SETTLE_MS)).rejects.toThrow(
      `${hops[1]!.url}: receipt for step 0 states input hash ${x}, but the previous hop ${hops[0]!.url} stated output hash ${b}`,
    );
    expect(() => checker.throwIfFailed()).toThrow("states input hash");
  });

  it("fails when the route's ends are not what the client sent and received", async () => {
    const checker = new ReceiptChecker(hops, undefined);
    const [s0, s1] = servers(hops);
    const [a, b, c, other] = [h(), h(), h(), h()];
    checker.expect(0n, 1, [{ inputHash: a }, { outputHash: other }]);
    checker.arrive(0, s0!.receipt(0n, a, b));
    checker.arrive(1, s1!.receipt(0n, b, c));
    await expect(checker.settle(SETTLE_MS)).rejects.toThrow(
      `${hops[1]!.url}: receipt for step 0 states output hash ${c}, but the client received activations hashing to ${other}`,
    );
  });

  it("fails on a chain signed by another key, and on a missing receipt, naming the server", async () => {
    const forged = new ReceiptChecker(hops, undefined);
    const [s0, s1] = servers(hops);
    const [a, b, c] = [h(), h(), h()];
    const impostor = Wallet.createRandom();
    forged.expect(0n, 1, [{ inputHash: a }, { outputHash: c }]);
    forged.arrive(0, s0!.receipt(0n, a, b));
    forged.arrive(1, s1!.receipt(0n, b, c, { signer: impostor }));
    await expect(forged.settle(SETTLE_MS)).rejects.toThrow(`${hops[1]!.url}: its receipts through step 0 are signed by ${impostor.address}, not the server ${hops[1]!.server}`);

    const missing = new ReceiptChecker(hops, undefined);
    const [m0] = servers(hops);
    missing.expect(0n, 1, [{ inputHash: a }, { outputHash: c }]);
    missing.arrive(0, m0!.receipt(0n, a, b));
    await expect(missing.settle(20)).rejects.toThrow(`server 2 of 2 on the route (${hops[1]!.url}) did not deliver its receipt for step 0 within 20 ms`);
  });

  it("fails at once when a server leaves out a signature it announced, and when a receipt's hashes differ from the signed chain", async () => {
    const r = route(3);
    const unsigned = new ReceiptChecker(r, undefined);
    const [s0, s1] = servers(r);
    for (let step = 0n; step < 3n; step++) {
      const [a, b, c] = [h(), h(), h()];
      unsigned.expect(step, 1, [{ inputHash: a }, { outputHash: c }]);
      unsigned.arrive(0, s0!.receipt(step, a, b));
      unsigned.arrive(1, s1!.receipt(step, b, c, { sign: false }));
    }
    expect(() => unsigned.throwIfFailed()).toThrow(`${r[1]!.url}: receipt for step 2 carries no signature, but the server announced it signs its receipts every 3 steps`);

    // the server signs a chain over other hashes than the receipts it sent: the signature does not recover to it
    const lying = new ReceiptChecker(r, undefined);
    const [l0, l1] = servers(r);
    const [a, b, c] = [h(), h(), h()];
    lying.expect(0n, 1, [{ inputHash: a }, { outputHash: c }]);
    lying.arrive(0, l0!.receipt(0n, a, b));
    l1!.receipt(0n, b, h(), { sign: false }); // what its own chain holds
    const sent = l1!.close().signature;
    lying.arrive(1, { type: MessageType.StepReceipt, requestId: 0, sessionId: r[1]!.sessionId, step: 0n, signed: { server: r[1]!.server, firstLayer: 4, lastLayer: 8, inputHash: b, outputHash: c, chainSignature: sent } });
    await expect(lying.waitFor(0n, 0n, SETTLE_MS)).rejects.toThrow(`${r[1]!.url}: its receipts through step 0 are signed by`);
  });

  it("compares hashes the moment a receipt arrives, before any signature is recovered", () => {
    const checker = new ReceiptChecker(hops, undefined);
    const [s0, s1] = servers(hops);
    const [a, b, x, c] = [h(), h(), h(), h()];
    checker.expect(0n, 1, [{ inputHash: a }, { outputHash: c }]);
    checker.arrive(0, s0!.receipt(0n, a, b));
    expect(() => checker.throwIfFailed()).not.toThrow();
    checker.arrive(1, s1!.receipt(0n, x, c));
    expect(() => checker.throwIfFailed()).toThrow(expect.objectContaining({ name: "ReceiptError", step: 0n, url: hops[1]!.url }));
    // a receipt that arrives before the output is compared once the output comes
    const early = new ReceiptChecker(hops, undefined);
    early.arrive(0, servers(hops)[0]!.receipt(0n, x, b));
    expect(() => early.throwIfFailed()).not.toThrow();
    early.expect(0n, 1, [{ inputHash: a }, { outputHash: c }]);
    expect(() => early.throwIfFailed()).toThrow(`${hops[0]!.url}: receipt for step 0 states input hash ${x}, but the client sent activations hashing to ${a}`);
  });

  it("waits for receipts and signatures up to the steps asked, and names a server whose receipt never comes", async () => {
    const checker = new ReceiptChecker(hops, undefined);
    const [s0, s1] = servers(hops);
    const steps = [0, 1, 2].map(() => [h(), h(), h()]);
    for (const [i, [a, b, c]] of steps.entries()) {
      checker.expect(BigInt(i), 1, [{ inputHash: a! }, { outputHash: c! }]);
      checker.arrive(0, s0!.receipt(BigInt(i), a!, b!));
      if (i < 2) checker.arrive(1, s1!.receipt(BigInt(i), b!, c!));
    }
    await checker.waitFor(1n, 1n, SETTLE_MS); // steps 0 and 1 complete and verified
    await expect(checker.waitFor(2n, 0n, 20)).rejects.toMatchObject({
      name: "StepTimeoutError",
      message: `server 2 of 2 on the route (${hops[1]!.url}) did not deliver its receipt for step 2 within 20 ms`,
    });
  });

  it("beforeStep lets signatures lag by a run and N steps, and no more: a bad signature over a run ending at step k stops step k + N + 1", async () => {
    const N = 2;
    const K = 3;
    const k = 5n; // the second run of hop 1: steps 3..5
    const r = route(K);
    const impostor = Wallet.createRandom();
    // the recovery of the impostor's signature waits until released: a slow recovery
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    const slow = async (d: typeof domain, head: ReceiptChainHead, signature: string): Promise<string> => {
      const signer = recoverReceiptChainSigner(d, head, signature);
      if (signer === impostor.address) await released;
      return signer;
    };
    const checker = new ReceiptChecker(r, undefined, slow);
    const [s0, s1] = servers(r);
    const sent: bigint[] = [];
    for (let step = 0n; step <= k + BigInt(N); step++) {
      await checker.beforeStep(step, N, SETTLE_MS); // steps up to k + N may be sent
      const [a, b, c] = [h(), h(), h()];
      checker.expect(step, 1, [{ inputHash: a }, { outputHash: c }]);
      checker.arrive(0, s0!.receipt(step, a, b));
      checker.arrive(1, s1!.receipt(step, b, c, step === k ? { signer: impostor } : {}));
      sent.push(step);
    }
    expect(sent).toHaveLength(Number(k) + N + 1);
    // step k + N + 1 waits for the run ending at k to be verified, which fails
    const next = checker.beforeStep(k + BigInt(N) + 1n, N, SETTLE_MS);
    release();
    await expect(next).rejects.toMatchObject({ name: "ReceiptError", step: k, url: r[1]!.url });
  });

  it("seal checks the signature a server gives as its session closes over the receipts it had not signed, and reports them", async () => {
    const r = route(4);
    const seen: VerifiedReceipt[] = [];
    const checker = new ReceiptChecker(r, (v) => seen.push(v));
    const [s0, s1] = servers(r);
    for (let step = 0n; step < 6n; step++) {
      const [a, b, c] = [h(), h(), h()];
      checker.expect(step, 1, [{ inputHash: a }, { outputHash: c }]);
      checker.arrive(0, s0!.receipt(step, a, b));
      checker.arrive(1, s1!.receipt(step, b, c));
    }
    await checker.settle(SETTLE_MS); // hop 1's run 0..3 is signed; 4 and 5 wait for the close
    expect(seen.filter((v) => v.receipt.server === r[1]!.server).map((v) => [v.receipt.step, v.chain.lastStep])).toEqual([0n, 1n, 2n, 3n].map((x) => [x, 3n]));
    await checker.seal([undefined, s1!.close()], SETTLE_MS);
    expect(seen.filter((v) => v.receipt.server === r[1]!.server).map((v) => [v.receipt.step, v.chain.lastStep])).toEqual(
      [0n, 1n, 2n, 3n, 4n, 5n].map((x) => [x, x < 4n ? 3n : 5n]),
    );
    expect(seen.filter((v) => v.receipt.server === r[0]!.server)).toHaveLength(6);
  });

  it("seal fails when a server with unsigned receipts gives no signature, one through another step, or another key's", async () => {
    const unsealed = async (close: (s: Server) => { lastStep: bigint; signature: string } | undefined): Promise<ReceiptChecker> => {
      const r = route(4);
      const checker = new ReceiptChecker(r, undefined);
      const [s0, s1] = servers(r);
      for (let step = 0n; step < 2n; step++) {
        const [a, b, c] = [h(), h(), h()];
        checker.expect(step, 1, [{ inputHash: a }, { outputHash: c }]);
        checker.arrive(0, s0!.receipt(step, a, b));
        checker.arrive(1, s1!.receipt(step, b, c));
      }
      await checker.settle(SETTLE_MS);
      await expect(checker.seal([undefined, close(s1!)], SETTLE_MS)).rejects.toMatchObject({ name: "ReceiptError", url: r[1]!.url });
      return checker;
    };
    const none = await unsealed(() => undefined);
    expect(() => none.throwIfFailed()).toThrow("ws://127.0.0.1:9001: closing its session gave no signature, but its receipts of steps 0..1 are unsigned");
    const short = await unsealed((s) => ({ ...s.close(), lastStep: 0n }));
    expect(() => short.throwIfFailed()).toThrow("closing its session gave a signature through step 0, but its receipts of steps 0..1 are unsigned");
    const impostor = Wallet.createRandom();
    const forged = await unsealed((s) => s.close(impostor));
    expect(() => forged.throwIfFailed()).toThrow(`its receipts through step 1 are signed by ${impostor.address}, not the server`);
  });

  it("refuses a receipt for a step that was never sent, and a second receipt for a step", () => {
    const ahead = new ReceiptChecker(hops, undefined);
    ahead.arrive(0, servers(hops)[0]!.receipt(0n, h(), h()));
    const [s0] = servers(hops);
    const early = new ReceiptChecker(hops, undefined);
    s0!.receipt(0n, h(), h());
    early.arrive(0, s0!.receipt(1n, h(), h())); // step 0 is the only one that can be in flight
    expect(() => early.throwIfFailed()).toThrow(`server 1 of 2 on the route (${hops[0]!.url}) sent a receipt for step 1, which was never sent`);
    const twice = new ReceiptChecker(hops, undefined);
    const [a, b] = [h(), h()];
    const [t0] = servers(hops);
    twice.arrive(0, t0!.receipt(0n, a, b));
    twice.arrive(0, { ...t0!.receipt(1n, a, b), step: 0n });
    expect(() => twice.throwIfFailed()).toThrow(`server 1 of 2 on the route (${hops[0]!.url}) sent a second receipt for step 0`);
  });
});
