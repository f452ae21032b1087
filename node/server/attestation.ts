import type { SigningKey, TypedDataDomain } from "ethers";
import { activationHash, type EncodedActivations } from "../../protocol/activations.js";
import { signReceiptWithKey, type Receipt } from "../../protocol/receipt.js";
import { ErrorCode, WireError, type ServerReceipt } from "../../protocol/wire.js";
import type { ActivationStore } from "../store/activationStore.js";

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
}

/**
 * Turns a computed step into evidence: hashes both activations, signs the EIP-712 receipt and
 * stores the step (receipt, signature, both activations) before the receipt may leave, so a restart
 * never loses a receipt a client holds. If the store cannot take a step (a write failed, or it is
 * full of steps it must keep), the attestor fails for good: `check()` then refuses every later step
 * with StoreFailed and the reason, since serving without receipts would be unpaid, unprovable work.
 */
export class Attestor {
  private failure: string | undefined;

  constructor(private readonly o: AttestorOptions) {}

  /** Why this server can take no steps, if it cannot. */
  get failed(): string | undefined {
    return this.failure;
  }

  /** Refuses a step of `tokens` rows when receipts cannot be recorded (now, or for lack of room). */
  check(tokens: number, hiddenSize: number): void {
    if (this.failure !== undefined) throw new WireError(ErrorCode.StoreFailed, `server cannot record receipts, so it takes no steps: ${this.failure}`);
    // fp32 is the largest encoding: an input and an output of that many rows
    const worst = 2 * tokens * hiddenSize * 4;
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

  /** Signs and stores the receipt of one step; returns what the client is sent. Throws StoreFailed when the store write fails. */
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
    const signature = signReceiptWithKey(this.o.signingKey, this.o.domain, receipt);
    try {
      this.o.store.put({ receipt, signature, input, output, createdAtMs: Date.now() });
    } catch (err) {
      this.failure = `writing step ${step.step} of session ${step.sessionId} failed: ${(err as Error).message}`;
      throw new WireError(ErrorCode.StoreFailed, `server cannot record receipts, so it takes no steps: ${this.failure}`);
    }
    return {
      server: this.o.address,
      firstLayer: this.o.firstLayer,
      lastLayer: this.o.lastLayer,
      inputHash: receipt.inputHash,
      outputHash: receipt.outputHash,
      signature,
    };
  }
}
