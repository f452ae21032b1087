import type { TypedDataDomain } from "ethers";
import { canonicalSignature } from "../protocol/eip712.js";
import { receiptDigest, type Receipt } from "../protocol/receipt.js";
import { signerPool } from "./signerPool.js";
import type { HopResult, StepReceipt } from "../protocol/wire.js";
import { RouteError } from "./routeError.js";

/** A receipt the client checked: signed by the hop's server over exactly what was sent and received. */
export interface VerifiedReceipt {
  receipt: Receipt;
  signature: string;
}

/** One server of a route as the client knows it: what its receipts must say, and who must sign them. */
export interface ReceiptHop {
  url: string;
  server: string;
  domain: TypedDataDomain;
  firstLayer: number;
  lastLayer: number;
  variantId: string;
  sessionId: string;
}

/** Activation hashes of one hop that the client computed itself (relaying: all; forwarding: the route's ends). */
export interface KnownHashes {
  inputHash?: string;
  outputHash?: string;
}

interface PendingStep {
  tokens?: number;
  known?: KnownHashes[];
  receipts: (HopResult | undefined)[];
  arrived: number;
}

/**
 * Checks the receipts of one sequence along a route, off the client's critical path: a step is
 * checked once its output is known (`expect`) and every hop's receipt has arrived (`arrive`), in
 * either order. Every receipt must be signed by its hop's announced server over the step's session,
 * step, layers, variant and tokens, and the hashes must chain: hop 0's input hash is what the client
 * sent, each next hop's input hash is the previous hop's output hash, and the last output hash is
 * what the client received. A failure is kept and thrown by the next `throwIfFailed` (the next step)
 * or by `settle` (the close), so at most one step goes unchecked.
 */
export class ReceiptChecker {
  private failure: Error | undefined;
  private checks: Promise<void> = Promise.resolve();
  private readonly steps = new Map<bigint, PendingStep>();
  private onSettled: (() => void) | undefined;

  constructor(
    private readonly hops: readonly ReceiptHop[],
    private readonly onReceipt: ((r: VerifiedReceipt) => void) | undefined,
  ) {}

  throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  /** Records a failure seen outside the receipts (e.g. a forwarded step's late error). */
  fail(err: Error): void {
    this.failure ??= err;
  }

  /** Hop `hop`'s receipt for a step arrived. */
  arrive(hop: number, m: StepReceipt): void {
    const s = this.pending(m.step);
    if (s.receipts[hop] !== undefined) {
      this.fail(new RouteError(`${this.hops[hop]!.url} sent a second receipt for step ${m.step}`));
      return;
    }
    s.receipts[hop] = m.hop;
    s.arrived++;
    this.checkIfComplete(m.step, s);
  }

  /** Step `step` of `tokens` tokens gave its output; `known` holds the hashes the client computed, per hop. */
  expect(step: bigint, tokens: number, known: KnownHashes[]): void {
    const s = this.pending(step);
    s.tokens = tokens;
    s.known = known;
    this.checkIfComplete(step, s);
  }

  /**
   * Waits until every expected step's receipts have arrived and been checked (at most `timeoutMs`),
   * then throws the first failure, if any. Receipts of steps that failed are not waited for.
   */
  async settle(timeoutMs: number): Promise<void> {
    if (this.awaitedSteps().length > 0) {
      let timer: NodeJS.Timeout | undefined;
      const settled = new Promise<"settled">((resolve) => (this.onSettled = () => resolve("settled")));
      const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)));
      const outcome = await Promise.race([settled, timedOut]);
      clearTimeout(timer);
      this.onSettled = undefined;
      if (outcome === "timeout") {
        const missing = new Set<string>();
        for (const s of this.awaitedSteps()) this.hops.forEach((h, i) => s.receipts[i] === undefined && missing.add(h.url));
        this.fail(new RouteError(`no receipt within ${timeoutMs} ms from ${[...missing].join(", ")}`));
      }
    }
    await this.checks;
    this.throwIfFailed();
  }

  private awaitedSteps(): PendingStep[] {
    return [...this.steps.values()].filter((s) => s.known !== undefined);
  }

  private pending(step: bigint): PendingStep {
    let s = this.steps.get(step);
    if (s === undefined) {
      s = { receipts: this.hops.map(() => undefined), arrived: 0 };
      this.steps.set(step, s);
    }
    return s;
  }

  private checkIfComplete(step: bigint, s: PendingStep): void {
    if (s.known === undefined || s.tokens === undefined || s.arrived < this.hops.length) return;
    this.steps.delete(step);
    const { known, tokens } = s;
    const receipts = s.receipts as HopResult[];
    // Signature recovery costs ~1.5 ms per receipt: it runs on the signer pool's worker thread, all
    // of a step's hops at once, while this thread goes on; results are taken in order.
    this.checks = this.checks.then(() => this.checkChain(step, known, receipts)).catch((err: unknown) => this.fail(err as Error));
    const signed = this.hops.map((_, i) => this.checkSignature(step, tokens, i, receipts[i]!));
    for (const check of signed) {
      check.catch(() => undefined); // reported in order below
      this.checks = this.checks
        .then(async () => {
          const report = await check;
          if (this.failure === undefined) report();
        })
        .catch((err: unknown) => this.fail(err as Error));
    }
    if (this.onSettled !== undefined && this.awaitedSteps().length === 0) this.onSettled();
  }

  /** The hashes chain from what the client sent, hop to hop, to what it received. */
  private checkChain(step: bigint, known: readonly KnownHashes[], receipts: readonly HopResult[]): void {
    this.hops.forEach((h, i) => {
      const r = receipts[i]!;
      const k = known[i] ?? {};
      const claim = (what: string, signed: string, seen: string, source: string): void => {
        if (signed !== seen) throw new RouteError(`${h.url}: receipt for step ${step} signs ${what} ${signed}, but ${source} ${seen}`);
      };
      if (k.inputHash !== undefined) claim("input hash", r.inputHash, k.inputHash, "the client sent activations hashing to");
      if (i > 0) claim("input hash", r.inputHash, receipts[i - 1]!.outputHash, `the previous hop ${this.hops[i - 1]!.url} signed output hash`);
      if (k.outputHash !== undefined) claim("output hash", r.outputHash, k.outputHash, "the client received activations hashing to");
    });
  }

  /**
   * Hop `i`'s receipt is signed by its announced server over the step as the client knows it;
   * resolves with the report of the verified receipt (made in step order by the caller).
   */
  private async checkSignature(step: bigint, tokens: number, i: number, r: HopResult): Promise<() => void> {
    const h = this.hops[i]!;
    const receipt: Receipt = {
      sessionId: h.sessionId,
      step,
      firstLayer: h.firstLayer,
      lastLayer: h.lastLayer,
      variantId: h.variantId,
      inputHash: r.inputHash,
      outputHash: r.outputHash,
      tokens,
      server: h.server,
    };
    let signer: string;
    try {
      signer = await signerPool.recover(receiptDigest(h.domain, receipt), canonicalSignature(r.signature));
    } catch (err) {
      throw new RouteError(`${h.url}: receipt for step ${step} carries an invalid signature: ${(err as Error).message}`);
    }
    if (signer !== h.server) throw new RouteError(`${h.url}: receipt for step ${step} is signed by ${signer}, not the server ${h.server}`);
    return () => this.onReceipt?.({ receipt, signature: r.signature });
  }
}
