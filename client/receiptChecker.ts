import type { TypedDataDomain } from "ethers";
import { canonicalSignature } from "../protocol/eip712.js";
import { receiptDigest, type Receipt } from "../protocol/receipt.js";
import { recoverAddress } from "../protocol/secp256k1.js";
import type { ServerReceipt, StepReceipt } from "../protocol/wire.js";
import { ReceiptError, RouteError, StepTimeoutError, routePlace } from "./routeError.js";

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
  receipts: (ServerReceipt | undefined)[];
  arrived: number;
  /** Signature recovery of the step's receipts has started. */
  recovering: boolean;
  /** Set once every signature matched: reports the step's receipts (called in step order). */
  report?: () => void;
}

/**
 * Checks the receipts of one sequence along a route, in two parts that run at different speeds.
 *
 * Hashes are compared the moment a receipt arrives, on the calling thread (a string comparison):
 * hop 0's input hash is what the client sent, each next hop's input hash is the previous hop's
 * output hash, and the last output hash is what the client received (relaying, the client knows
 * every hop's hashes; forwarding, only the route's ends). A step's hashes are known once its output
 * is (`expect`) and its receipts have arrived (`arrive`), in either order.
 *
 * Signatures (each receipt signed by its hop's announced server over the step's session, step,
 * layers, variant, hashes and tokens) are recovered once a step's receipts are all in (~80 µs
 * each on libsecp256k1), and may lag behind the step. A step is verified once both parts pass; verified receipts
 * are reported to `onReceipt` in step order. When two hops' hashes do not chain and the client
 * knows neither (inside a forwarded route), it cannot tell which of the two lies: the error names
 * both, and blames the later.
 *
 * The caller bounds the lag with `waitFor` (see RemotePipeline: receipts at most one step behind,
 * signatures at most N). A failure is kept: `throwIfFailed`, `waitFor` and `settle` throw it.
 */
export class ReceiptChecker {
  private failure: Error | undefined;
  private readonly steps = new Map<bigint, PendingStep>();
  /** Every step up to this one is verified. */
  private verifiedThrough = -1n;
  /** The last step whose output the client has (`expect`). */
  private expectedThrough = -1n;
  /** Conditions waited for, re-evaluated on every change. */
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly hops: readonly ReceiptHop[],
    private readonly onReceipt: ((r: VerifiedReceipt) => void) | undefined,
    /** Recovers a digest's signer (default: protocol/secp256k1, on this thread; tests slow it down). */
    private readonly recover: (digest: string, signature: string) => Promise<string> = async (d, sig) => recoverAddress(d, sig),
  ) {}

  throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  /** Records a failure seen outside the receipts (e.g. a forwarded step's late error). */
  fail(err: Error): void {
    this.failure ??= err;
    this.notify();
  }

  /** Hop `hop`'s receipt for a step arrived: its hashes are compared now. */
  arrive(hop: number, m: StepReceipt): void {
    const place = routePlace(hop, this.hops.length, this.hops[hop]!.url);
    // at most one step is in flight: the one after the last output received
    if (m.step > this.expectedThrough + 1n) return this.fail(new RouteError(`${place} sent a receipt for step ${m.step}, which was never sent`));
    const s = m.step <= this.verifiedThrough ? undefined : this.pending(m.step);
    if (s === undefined || s.receipts[hop] !== undefined) return this.fail(new RouteError(`${place} sent a second receipt for step ${m.step}`));
    s.receipts[hop] = m.signed;
    s.arrived++;
    this.compare(m.step, s, [hop]);
    this.recoverIfComplete(m.step, s);
    this.notify();
  }

  /**
   * Relaying: the client learnt hop `hop`'s hashes for `step` as its output came; they are compared
   * at once, so a hop whose receipt misstates them is the one blamed, before the next hop's receipt
   * (which would chain to the misstated hash) arrives.
   */
  know(step: bigint, hop: number, hashes: KnownHashes): void {
    const s = this.pending(step);
    (s.known ??= this.hops.map(() => ({})))[hop] = hashes;
    this.compare(step, s, [hop]);
    this.notify();
  }

  /** Step `step` of `tokens` tokens gave its output; `known` holds the hashes the client computed, per hop. */
  expect(step: bigint, tokens: number, known: KnownHashes[]): void {
    const s = this.pending(step);
    s.tokens = tokens;
    s.known = known;
    if (step > this.expectedThrough) this.expectedThrough = step;
    this.compare(step, s, this.hops.map((_, i) => i));
    this.recoverIfComplete(step, s);
    this.notify();
  }

  /** The first hop (route position) whose receipt for `step` has not arrived; undefined if all have. */
  firstMissingReceipt(step: bigint): number | undefined {
    if (step <= this.verifiedThrough) return undefined;
    const s = this.steps.get(step);
    if (s === undefined) return 0;
    const i = s.receipts.findIndex((r) => r === undefined);
    return i < 0 ? undefined : i;
  }

  /**
   * Resolves once every receipt of the steps up to `receivedThrough` has arrived (so its hashes were
   * compared) and every step up to `verifiedThrough` is verified. Rejects with the failure as soon as
   * there is one, or after `timeoutMs` with a StepTimeoutError naming the first server whose receipt
   * is missing.
   */
  waitFor(receivedThrough: bigint, verifiedThrough: bigint, timeoutMs: number): Promise<void> {
    const ready = (): boolean => this.allArrived(receivedThrough) && this.verifiedThrough >= verifiedThrough;
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (ready()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(this.overdue(receivedThrough > verifiedThrough ? receivedThrough : verifiedThrough, timeoutMs));
      }, timeoutMs);
      const check = (): void => {
        if (this.failure === undefined && !ready()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        if (this.failure !== undefined) reject(this.failure);
        else resolve();
      };
      this.waiters.add(check);
    });
  }

  /**
   * The lag bound, awaited before step `step` is sent: every receipt up to step - 2 has arrived (its
   * hashes compared), and at most `maxUnverified` steps (the last ones) are still being verified.
   */
  beforeStep(step: bigint, maxUnverified: number, timeoutMs: number): Promise<void> {
    return this.waitFor(step - 2n, step - 1n - BigInt(maxUnverified), timeoutMs);
  }

  /** Waits (at most `timeoutMs`) until every step whose output came is verified, then throws the first failure, if any. */
  async settle(timeoutMs: number): Promise<void> {
    await this.waitFor(this.expectedThrough, this.expectedThrough, timeoutMs);
  }

  private notify(): void {
    for (const check of [...this.waiters]) check();
  }

  private allArrived(through: bigint): boolean {
    for (const [step, s] of this.steps) if (step <= through && s.arrived < this.hops.length) return false;
    return true;
  }

  /** The error of a wait that ran out: the first missing receipt, or signature recovery that did not finish. */
  private overdue(through: bigint, timeoutMs: number): Error {
    const steps = [...this.steps.keys()].filter((k) => k <= through).sort((a, b) => (a < b ? -1 : 1));
    for (const step of steps) {
      const hop = this.firstMissingReceipt(step);
      if (hop !== undefined) return new StepTimeoutError(this.hops[hop]!.url, hop, this.hops.length, `its receipt for step ${step}`, timeoutMs);
    }
    return new RouteError(`the receipts' signatures up to step ${through} were not recovered within ${timeoutMs} ms`);
  }

  private pending(step: bigint): PendingStep {
    let s = this.steps.get(step);
    if (s === undefined) {
      s = { receipts: this.hops.map(() => undefined), arrived: 0, recovering: false };
      this.steps.set(step, s);
    }
    return s;
  }

  /** Compares the hashes of hops `which` of a step with what the client knows and with their neighbours'. */
  private compare(step: bigint, s: PendingStep, which: readonly number[]): void {
    try {
      for (const i of which) {
        const r = s.receipts[i];
        if (r === undefined) continue;
        const k = s.known?.[i] ?? {};
        if (k.inputHash !== undefined) this.claim(step, i, "input hash", r.inputHash, k.inputHash, "the client sent activations hashing to");
        if (k.outputHash !== undefined) this.claim(step, i, "output hash", r.outputHash, k.outputHash, "the client received activations hashing to");
        const before = s.receipts[i - 1];
        if (before !== undefined) this.chain(step, i, before, r);
        const after = s.receipts[i + 1];
        if (after !== undefined) this.chain(step, i + 1, r, after);
      }
    } catch (err) {
      this.fail(err as Error);
    }
  }

  /** Hop `i`'s input hash is hop `i - 1`'s output hash. */
  private chain(step: bigint, i: number, before: ServerReceipt, r: ServerReceipt): void {
    this.claim(step, i, "input hash", r.inputHash, before.outputHash, `the previous hop ${this.hops[i - 1]!.url} signed output hash`);
  }

  private claim(step: bigint, i: number, what: string, signed: string, seen: string, source: string): void {
    const url = this.hops[i]!.url;
    if (signed !== seen) throw new ReceiptError(`${url}: receipt for step ${step} signs ${what} ${signed}, but ${source} ${seen}`, url, step);
  }

  /** Once a step's output and all its receipts are in, its signatures are recovered. */
  private recoverIfComplete(step: bigint, s: PendingStep): void {
    if (s.recovering || s.tokens === undefined || s.arrived < this.hops.length) return;
    s.recovering = true;
    const tokens = s.tokens;
    const checks = this.hops.map((_, i) => this.checkSignature(step, tokens, i, s.receipts[i]!));
    // all of a step's hops at once; the first failure in route order is the one reported
    Promise.allSettled(checks).then((outcomes) => {
      const failed = outcomes.find((o) => o.status === "rejected");
      if (failed !== undefined) return this.fail(failed.reason as Error);
      const reports = outcomes.map((o) => (o as PromiseFulfilledResult<() => void>).value);
      s.report = () => reports.forEach((report) => report());
      this.advance();
    }, (err: unknown) => this.fail(err as Error));
  }

  /** Moves past every verified step in order, reporting its receipts. */
  private advance(): void {
    for (let s = this.steps.get(this.verifiedThrough + 1n); s?.report !== undefined; s = this.steps.get(this.verifiedThrough + 1n)) {
      if (this.failure !== undefined) return;
      s.report();
      this.steps.delete(this.verifiedThrough + 1n);
      this.verifiedThrough++;
    }
    this.notify();
  }

  /**
   * Hop `i`'s receipt is signed by its announced server over the step as the client knows it;
   * resolves with the report of the verified receipt (made in step order by `advance`).
   */
  private async checkSignature(step: bigint, tokens: number, i: number, r: ServerReceipt): Promise<() => void> {
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
      signer = await this.recover(receiptDigest(h.domain, receipt), canonicalSignature(r.signature));
    } catch (err) {
      throw new ReceiptError(`${h.url}: receipt for step ${step} carries an invalid signature: ${(err as Error).message}`, h.url, step);
    }
    if (signer !== h.server) throw new ReceiptError(`${h.url}: receipt for step ${step} is signed by ${signer}, not the server ${h.server}`, h.url, step);
    return () => this.onReceipt?.({ receipt, signature: r.signature });
  }
}
