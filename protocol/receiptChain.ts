import { ZeroHash, getAddress, getBytes, isHexString, toBeHex, type SigningKey, type TypedDataDomain } from "ethers";
import { RECEIPT_CHAIN_TYPES, canonicalSignature, typeHashOf, typedDataDigest } from "./eip712.js";
import { InvalidArgumentError } from "./errors.js";
import { hexBytes, keccak256Of } from "./keccak.js";
import { recoverAddress, signDigest } from "./secp256k1.js";

/**
 * Receipt chains: a server signs a session's receipts a run at a time instead of one by one. The
 * chain of a session starts at `RECEIPT_CHAIN_START` before step 0, and each step's receipt leaf
 * (protocol/receipt.ts receiptLeaf, the EIP-712 struct hash) extends it: head_n =
 * keccak256(head_{n-1} ‖ leaf_n), steps consecutive from 0. One signature over
 * ReceiptChain{sessionId, server, lastStep: n, head_n} vouches for every receipt through step n:
 * whoever holds the receipts can recompute the head and recover the signer. Mirrors
 * `ReceiptLib.chainNext` / `ReceiptLib.hashChain`; on chain, a receipt is evidence once it is under
 * a batch root its server posted, so the signature is what binds the server off chain (the client's
 * check as it goes, its wallet's record), at one ECDSA signature and recovery per run.
 */
export const RECEIPT_CHAIN_START = ZeroHash;

/** What a chain signature covers: session `sessionId`'s receipts from step 0 through `lastStep`, hashing to `head`. */
export interface ReceiptChainHead {
  sessionId: string;
  server: string;
  lastStep: bigint;
  head: string;
}

/** A chain head with its server's signature. */
export interface SignedReceiptChain extends ReceiptChainHead {
  signature: string;
}

const UINT64_MAX = (1n << 64n) - 1n;
const RECEIPT_CHAIN_TYPEHASH = typeHashOf(RECEIPT_CHAIN_TYPES, "ReceiptChain");

/** The chain head after the receipt with leaf `leaf`: keccak256(head ‖ leaf). */
export function chainNext(head: string, leaf: string): string {
  if (!isHexString(head, 32) || !isHexString(leaf, 32)) throw new InvalidArgumentError(`receipt chain head and leaf must be 32 bytes of hex, got ${head} and ${leaf}`);
  return keccak256Of(hexBytes(head), hexBytes(leaf));
}

/** Whether step `step`'s receipt ends a run of a server that signs every `signEvery` steps: it carries the chain's signature. */
export function endsRun(step: bigint, signEvery: number): boolean {
  return (step + 1n) % BigInt(signEvery) === 0n;
}

/** The head of a chain over `leaves` (steps 0, 1, …). */
export function chainOf(leaves: readonly string[]): string {
  return leaves.reduce(chainNext, RECEIPT_CHAIN_START);
}

/** The EIP-712 struct hash of a chain head (`ReceiptLib.hashChain`). */
export function receiptChainHash(c: ReceiptChainHead): string {
  for (const field of ["sessionId", "head"] as const) {
    if (!isHexString(c[field], 32)) throw new InvalidArgumentError(`receipt chain ${field} must be 32 bytes of hex, got ${String(c[field])}`);
  }
  if (c.lastStep < 0n || c.lastStep > UINT64_MAX) throw new InvalidArgumentError(`receipt chain lastStep ${c.lastStep} is outside uint64`);
  const words = new Uint8Array(160);
  words.set(RECEIPT_CHAIN_TYPEHASH, 0);
  words.set(getBytes(c.sessionId), 32);
  words.set(getBytes(getAddress(c.server)), 76); // address: left-padded to 32 bytes
  words.set(getBytes(toBeHex(c.lastStep, 32)), 96);
  words.set(getBytes(c.head), 128);
  return keccak256Of(words);
}

/** The EIP-712 digest the server signs (same domain as receipts: protocol/eip712.ts receiptDomain). */
export function receiptChainDigest(domain: TypedDataDomain, c: ReceiptChainHead): string {
  return typedDataDigest(domain, receiptChainHash(c));
}

/** Signs a chain head with the server's key. */
export function signReceiptChain(key: SigningKey, domain: TypedDataDomain, c: ReceiptChainHead): string {
  return signDigest(key, receiptChainDigest(domain, c));
}

/** The address that signed a chain head; the signature must be canonical (see `canonicalSignature`), as on chain. */
export function recoverReceiptChainSigner(domain: TypedDataDomain, c: ReceiptChainHead, signature: string): string {
  return recoverAddress(receiptChainDigest(domain, c), canonicalSignature(signature));
}

/**
 * One session's chain as it grows, step by step: what a server extends as it attests steps and a
 * client as it checks receipts.
 */
export class ReceiptChainState {
  /** The head through `lastStep` (RECEIPT_CHAIN_START before step 0). */
  head = RECEIPT_CHAIN_START;
  /** The last step in the chain (-1 before step 0). */
  lastStep = -1n;
  /** The last step a signature covers (-1 before any). */
  signedThrough = -1n;

  constructor(
    readonly sessionId: string,
    readonly server: string,
  ) {}

  /** Extends the chain with step `step`'s receipt leaf; steps must come in order from 0. */
  append(step: bigint, leaf: string): void {
    if (step !== this.lastStep + 1n) throw new InvalidArgumentError(`receipt chain of session ${this.sessionId} is at step ${this.lastStep}: step ${step} cannot follow`);
    this.head = chainNext(this.head, leaf);
    this.lastStep = step;
  }

  /** What a signature over the chain as it is now covers. */
  current(): ReceiptChainHead {
    return { sessionId: this.sessionId, server: this.server, lastStep: this.lastStep, head: this.head };
  }
}
