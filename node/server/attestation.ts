import type { SigningKey, TypedDataDomain } from "ethers";
import { activationHash, type EncodedActivations } from "../../protocol/activations.js";
import { receiptLeaf, type Receipt } from "../../protocol/receipt.js";
import { ReceiptChainState, endsRun, signReceiptChain } from "../../protocol/receiptChain.js";
import { ErrorCode, MAX_SIGN_EVERY, WireError, type ServerReceipt } from "../../protocol/wire.js";
import type { ActivationStore, StoredStep } from "../store/activationStore.js";

/** A session's receipt chain is signed after every this many steps unless the operator says otherwise (`efed server --sign-every`). */
export const DEFAULT_SIGN_EVERY = 16;

/** Computed steps are written to the store within this many ms, if no chain signature writes them sooner. */
export const DEFAULT_FLUSH_MS = 50;

/** Who attests: the staked key, the receipts' EIP-712 domain, and what it serves. */
export interface AttestorOptions {
  signingKey: SigningKey;
  /** The signer's address (announced in ServerInfo; the receipts name it). */
  address: string;
  domain: TypedDataDomain;
  variantId: string;
  firstLayer: number;
  lastLayer: number;
  store: ActivationStore;
  /** Steps per signed run of a session's receipt chain, 1..MAX_SIGN_EVERY (default DEFAULT_SIGN_EVERY). */
  signEvery?: number;
  /** Default DEFAULT_FLUSH_MS. */
  flushMs?: number;
  /** Told once, when a write fails and the attestor stops for good. */
  onFailure?: (reason: string) => void;
}

/**
 * Turns computed steps into evidence. Each step's receipt (both activation hashes, layers, variant,
 * tokens) extends its session's receipt chain (protocol/receiptChain.ts) and goes to the client
 * unsigned; every `signEvery` steps, and when the session closes, the server signs the chain once
 * for the whole run: one ECDSA signature per run instead of one per step.
 *
 * Steps (receipt and both activations) are written to the store in one transaction per run, before
 * the signature that covers them leaves, and at the latest `flushMs` after they were computed: a
 * restart never loses a step a client holds signed evidence of. If the store cannot take a step (a
 * write failed, or it is full of steps it must keep), the attestor fails for good: `check()` then
 * refuses every later step with StoreFailed and the reason, since serving without receipts would be
 * unpaid, unprovable work.
 */
export class Attestor {
  private failure: string | undefined;
  private readonly chains = new Map<string, ReceiptChainState>();
  /** Computed steps not yet written, with their leaves. */
  private pending: { step: StoredStep; leaf: string }[] = [];
  private pendingBytes = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  readonly signEvery: number;

  constructor(private readonly o: AttestorOptions) {
    this.signEvery = o.signEvery ?? DEFAULT_SIGN_EVERY;
    if (!Number.isInteger(this.signEvery) || this.signEvery < 1 || this.signEvery > MAX_SIGN_EVERY) {
      throw new RangeError(`receipt chains are signed every 1..${MAX_SIGN_EVERY} steps, got ${this.signEvery}`);
    }
  }

  /** Why this server can take no steps, if it cannot. */
  get failed(): string | undefined {
    return this.failure;
  }

  /** Refuses a step of `tokens` rows when receipts cannot be recorded (now, or for lack of room). */
  check(tokens: number, hiddenSize: number): void {
    if (this.failure !== undefined) throw this.storeFailed();
    // fp32 is the largest encoding: an input and an output of that many rows, besides the steps not yet written
    const worst = 2 * tokens * hiddenSize * 4 + this.pendingBytes;
    if (!this.o.store.hasRoomFor(worst)) {
      this.o.store.prune(Date.now());
      if (!this.o.store.hasRoomFor(worst)) {
        throw new WireError(
          ErrorCode.StoreFailed,
          `receipt store is full (${this.o.store.bytes()} of ${this.o.store.options.maxBytes} bytes hold steps still inside their challenge window)`,
        );
      }
    }
  }

  /**
   * The receipt of one step, which extends its session's chain; the step that ends a run of
   * `signEvery` carries the chain's signature. Throws StoreFailed when that run could not be written.
   */
  attest(step: { sessionId: string; step: bigint }, input: EncodedActivations, output: EncodedActivations): ServerReceipt {
    const receipt: Receipt = {
      sessionId: step.sessionId,
      step: step.step,
      firstLayer: this.o.firstLayer,
      lastLayer: this.o.lastLayer,
      variantId: this.o.variantId,
      inputHash: activationHash(input),
      outputHash: activationHash(output),
      tokens: input.rows,
      server: this.o.address,
    };
    const leaf = receiptLeaf(receipt);
    // a step that ran while its session was closed is stored, and its receipt goes out unsigned
    const chain = step.step === 0n ? this.chainOf(step.sessionId) : this.chains.get(step.sessionId);
    chain?.append(step.step, leaf);
    this.pending.push({ step: { receipt, input, output, createdAtMs: Date.now() }, leaf });
    this.pendingBytes += input.payload.byteLength + output.payload.byteLength;
    this.flushTimer ??= setTimeout(() => this.flushQuietly(), this.o.flushMs ?? DEFAULT_FLUSH_MS).unref();
    const signed = { server: this.o.address, firstLayer: this.o.firstLayer, lastLayer: this.o.lastLayer, inputHash: receipt.inputHash, outputHash: receipt.outputHash };
    if (chain === undefined || !endsRun(step.step, this.signEvery)) return signed;
    return { ...signed, chainSignature: this.seal(step.sessionId)!.signature };
  }

  /**
   * Writes the steps waiting, then signs session `sessionId`'s chain through its last step; undefined
   * when no step ran since the last signature. Throws StoreFailed when the write fails.
   */
  seal(sessionId: string): { lastStep: bigint; signature: string } | undefined {
    const chain = this.chains.get(sessionId);
    if (chain === undefined || chain.lastStep === chain.signedThrough) return undefined;
    this.flush();
    const signature = signReceiptChain(this.o.signingKey, this.o.domain, chain.current());
    chain.signedThrough = chain.lastStep;
    return { lastStep: chain.lastStep, signature };
  }

  /** The session is over: its chain is forgotten (its steps are written with the next run). */
  forget(sessionId: string): void {
    this.chains.delete(sessionId);
  }

  /** Writes every step waiting, in one transaction. Throws StoreFailed (and fails for good) when the write fails. */
  flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.failure !== undefined) throw this.storeFailed();
    if (this.pending.length === 0) return;
    const run = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    try {
      this.o.store.putAll(run.map((p) => p.step), run.map((p) => p.leaf));
    } catch (err) {
      const first = run[0]!.step.receipt;
      this.failure = `writing ${run.length} step(s) from step ${first.step} of session ${first.sessionId} failed: ${(err as Error).message}`;
      this.o.onFailure?.(this.failure);
      throw this.storeFailed();
    }
  }

  private flushQuietly(): void {
    try {
      this.flush();
    } catch {
      // recorded in `failure`: the next step, fetch or close is refused with it
    }
  }

  private chainOf(sessionId: string): ReceiptChainState {
    let chain = this.chains.get(sessionId);
    if (chain === undefined) {
      chain = new ReceiptChainState(sessionId, this.o.address);
      this.chains.set(sessionId, chain);
    }
    return chain;
  }

  private storeFailed(): WireError {
    return new WireError(ErrorCode.StoreFailed, `server cannot record receipts, so it takes no steps: ${this.failure}`);
  }
}
