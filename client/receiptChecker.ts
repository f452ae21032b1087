import type { TypedDataDomain } from "ethers";
import { receiptLeaf, type Receipt } from "../protocol/receipt.js";
import { ReceiptChainState, endsRun, recoverReceiptChainSigner, type ReceiptChainHead, type SignedReceiptChain } from "../protocol/receiptChain.js";
import type { ServerReceipt, StepReceipt } from "../protocol/wire.js";
import { ReceiptError, RouteError, StepTimeoutError, routePlace } from "./routeError.js";

/** A receipt the client checked: its hashes are what was sent and received, and its server signed a chain that holds it. */
export interface VerifiedReceipt {
  receipt: Receipt;
  /** The signed chain head that covers the receipt (lastStep ≥ the receipt's step). */
  chain: SignedReceiptChain;
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
  /** The server signs its chain after every this many steps (ServerInfo.signEvery). */
  signEvery: number;
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
}

/** One hop's chain as the client rebuilds it, and its receipts that no signature covers yet. */
interface HopChain {
  state: ReceiptChainState;
  unsigned: Receipt[];
  /** Every receipt through this step is covered by a verified signature. */
  verifiedThrough: bigint;
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
 * Signatures come a run at a time (protocol/receiptChain.ts): once a step is complete, each hop's
 * receipt (session, step, layers, variant, hashes, tokens, server) extends that hop's chain, in step
 * order; every `signEvery` steps the hop's receipt carries its server's signature over the chain,
 * which is recovered (~80 µs on libsecp256k1, once per run) and must be the announced server's.
 * A server that skips a signature it announced fails the route at once; `seal` checks the signature
 * over the rest of a chain that a server gives when its session closes. Verified receipts are
 * reported to `onReceipt`, each hop's in step order, as their runs are verified. When two hops'
 * hashes do not chain and the client knows neither (inside a forwarded route), it cannot tell which
 * of the two lies: the error names both, and blames the later.
 *
 * The caller bounds the lag with `waitFor` (see RemotePipeline: receipts at most one step behind,
 * signatures at most a run and N steps). A failure is kept: `throwIfFailed`, `waitFor`, `settle` and
 * `seal` throw it.
 */
export class ReceiptChecker {
  private failure: Error | undefined;
  private readonly steps = new Map<bigint, PendingStep>();
  private readonly chains: HopChain[];
  /** Every step up to this one is in the hops' chains (complete, hashes compared). */
  private chainedThrough = -1n;
  /** The last step whose output the client has (`expect`). */
  private expectedThrough = -1n;
  /** Conditions waited for, re-evaluated on every change. */
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly hops: readonly ReceiptHop[],
    private readonly onReceipt: ((r: VerifiedReceipt) => void) | undefined,
    /** Recovers a chain head's signer (default: protocol/receiptChain, on this thread; tests slow it down). */
    private readonly recover: (domain: TypedDataDomain, head: ReceiptChainHead, signature: string) => Promise<string> = async (d, h, sig) =>
      recoverReceiptChainSigner(d, h, sig),
  ) {
    this.chains = hops.map((h) => ({ state: new ReceiptChainState(h.sessionId, h.server), unsigned: [], verifiedThrough: -1n }));
  }

  /** The most steps a hop's signature may lag behind by its announced interval: the route's longest run. */
  get longestRun(): number {
    return Math.max(...this.hops.map((h) => h.signEvery));
  }

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
    const s = m.step <= this.chainedThrough ? undefined : this.pending(m.step);
    if (s === undefined || s.receipts[hop] !== undefined) return this.fail(new RouteError(`${place} sent a second receipt for step ${m.step}`));
    s.receipts[hop] = m.signed;
    s.arrived++;
    this.compare(m.step, s, [hop]);
    this.chainComplete();
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
    this.chainComplete();
    this.notify();
  }

  /** The first hop (route position) whose receipt for `step` has not arrived; undefined if all have. */
  firstMissingReceipt(step: bigint): number | undefined {
    if (step <= this.chainedThrough) return undefined;
    const s = this.steps.get(step);
    if (s === undefined) return 0;
    const i = s.receipts.findIndex((r) => r === undefined);
    return i < 0 ? undefined : i;
  }

  /**
   * Resolves once every receipt of the steps up to `receivedThrough` has arrived (so its hashes were
   * compared) and every hop's signatures cover its receipts up to `verifiedThrough`. Rejects with the
   * failure as soon as there is one, or after `timeoutMs` with a StepTimeoutError naming the first
   * server whose receipt is missing.
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
   * hashes compared), and no more than `maxUnverified` steps beyond the route's longest signed run are
   * still without a verified signature (a server signs only at the end of a run).
   */
  beforeStep(step: bigint, maxUnverified: number, timeoutMs: number): Promise<void> {
    return this.waitFor(step - 2n, step - 1n - BigInt(maxUnverified) - BigInt(this.longestRun - 1), timeoutMs);
  }

  /**
   * Waits (at most `timeoutMs`) until every receipt of every step whose output came has arrived and
   * the signatures of the runs they end are verified, then throws the first failure, if any. What is
   * left unsigned is for `seal` (the servers sign it when their sessions close).
   */
  async settle(timeoutMs: number): Promise<void> {
    await this.waitFor(this.expectedThrough, this.lastSignedRunEnd(), timeoutMs);
  }

  /**
   * Checks the signatures the servers gave when their sessions closed (per hop; undefined: none) over
   * their chains through their last steps, and waits (at most `timeoutMs`) until every receipt is
   * covered by a verified signature. A hop whose receipts no signature covers yet must give one.
   * Call after `settle`.
   */
  async seal(chains: readonly ({ lastStep: bigint; signature: string } | undefined)[], timeoutMs: number): Promise<void> {
    this.throwIfFailed();
    this.hops.forEach((h, i) => {
      const c = this.chains[i]!;
      const chain = chains[i];
      if (c.state.lastStep === c.state.signedThrough) return;
      if (chain === undefined || chain.lastStep !== c.state.lastStep) {
        const gave = chain === undefined ? "no signature" : `a signature through step ${chain.lastStep}`;
        const from = c.state.signedThrough + 1n;
        this.fail(new ReceiptError(`${h.url}: closing its session gave ${gave}, but its receipts of steps ${from}..${c.state.lastStep} are unsigned`, h.url, from));
        return;
      }
      void this.verifyRun(i, c.state.current(), chain.signature);
      c.state.signedThrough = c.state.lastStep;
    });
    await this.waitFor(this.expectedThrough, this.expectedThrough, timeoutMs);
  }

  private get verifiedThrough(): bigint {
    return this.chains.reduce((least, c) => (c.verifiedThrough < least ? c.verifiedThrough : least), this.chainedThrough);
  }

  /** The last step through which every hop's announced runs have ended (and so were signed). */
  private lastSignedRunEnd(): bigint {
    return this.hops.reduce((least, h) => {
      const end = ((this.expectedThrough + 1n) / BigInt(h.signEvery)) * BigInt(h.signEvery) - 1n;
      return end < least ? end : least;
    }, this.expectedThrough);
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
      s = { receipts: this.hops.map(() => undefined), arrived: 0 };
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
        if (before !== undefined) this.link(step, i, before, r);
        const after = s.receipts[i + 1];
        if (after !== undefined) this.link(step, i + 1, r, after);
      }
    } catch (err) {
      this.fail(err as Error);
    }
  }

  /** Hop `i`'s input hash is hop `i - 1`'s output hash. */
  private link(step: bigint, i: number, before: ServerReceipt, r: ServerReceipt): void {
    this.claim(step, i, "input hash", r.inputHash, before.outputHash, `the previous hop ${this.hops[i - 1]!.url} stated output hash`);
  }

  private claim(step: bigint, i: number, what: string, stated: string, seen: string, source: string): void {
    const url = this.hops[i]!.url;
    if (stated !== seen) throw new ReceiptError(`${url}: receipt for step ${step} states ${what} ${stated}, but ${source} ${seen}`, url, step);
  }

  /**
   * Appends every complete step, in order, to the hops' chains (a step is complete once its output
   * and all its receipts are in, their hashes compared), and checks the signatures that end runs.
   */
  private chainComplete(): void {
    for (let s = this.steps.get(this.chainedThrough + 1n); s !== undefined && this.failure === undefined; s = this.steps.get(this.chainedThrough + 1n)) {
      if (s.tokens === undefined || s.arrived < this.hops.length) return;
      const step = this.chainedThrough + 1n;
      for (let i = 0; i < this.hops.length; i++) this.chainReceipt(i, step, s.tokens, s.receipts[i]!);
      this.steps.delete(step);
      this.chainedThrough = step;
    }
  }

  private chainReceipt(i: number, step: bigint, tokens: number, r: ServerReceipt): void {
    const h = this.hops[i]!;
    const c = this.chains[i]!;
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
    c.state.append(step, receiptLeaf(receipt));
    c.unsigned.push(receipt);
    if (r.chainSignature !== undefined) {
      void this.verifyRun(i, c.state.current(), r.chainSignature);
      c.state.signedThrough = step;
    } else if (endsRun(step, h.signEvery)) {
      this.fail(new ReceiptError(`${h.url}: receipt for step ${step} carries no signature, but the server announced it signs its receipts every ${h.signEvery} steps`, h.url, step));
    }
  }

  /** Recovers the signer of hop `i`'s chain through `head.lastStep`; once it is the hop's server, reports the receipts it covers. */
  private async verifyRun(i: number, head: ReceiptChainHead, signature: string): Promise<void> {
    const h = this.hops[i]!;
    const c = this.chains[i]!;
    let signer: string;
    try {
      signer = await this.recover(h.domain, head, signature);
    } catch (err) {
      this.fail(new ReceiptError(`${h.url}: the signature over its receipts through step ${head.lastStep} is invalid: ${(err as Error).message}`, h.url, head.lastStep));
      return;
    }
    if (signer !== h.server) {
      this.fail(new ReceiptError(`${h.url}: its receipts through step ${head.lastStep} are signed by ${signer}, not the server ${h.server}`, h.url, head.lastStep));
      return;
    }
    if (this.failure !== undefined) return;
    const chain: SignedReceiptChain = { ...head, signature };
    const covered = c.unsigned.filter((r) => r.step <= head.lastStep);
    c.unsigned = c.unsigned.filter((r) => r.step > head.lastStep);
    if (head.lastStep > c.verifiedThrough) c.verifiedThrough = head.lastStep;
    for (const receipt of covered) this.onReceipt?.({ receipt, chain });
    this.notify();
  }
}
