import {
  getAddress,
  isHexString,
  type Signer,
  type SigningKey,
  type TypedDataDomain,
} from "ethers";
import { InvalidArgumentError } from "./errors.js";
import { RECEIPT_TYPES, canonicalSignature, typeHashOf, typedDataDigest } from "./eip712.js";
import { hexBytes, keccak256Of } from "./keccak.js";
import { recoverAddress, signDigest } from "./secp256k1.js";

/** One step of work, signed by the server that did it. Mirrors `ReceiptLib.Receipt`. */
export interface Receipt {
  /** 32-byte hex session id. */
  sessionId: string;
  /** Step index within the session, from 0 (uint64). */
  step: bigint;
  /** First layer computed (uint16). */
  firstLayer: number;
  /** One past the last layer computed (uint16). */
  lastLayer: number;
  /** 32-byte hex manifest hash of the model variant. */
  variantId: string;
  /** 32-byte hex activation hash of the input hidden states. */
  inputHash: string;
  /** 32-byte hex activation hash of the output hidden states. */
  outputHash: string;
  /** Tokens processed in the step (uint32). */
  tokens: number;
  /** Checksummed address of the server. */
  server: string;
}

const UINT16_MAX = 0xffff;
const UINT32_MAX = 0xffff_ffff;
const UINT64_MAX = (1n << 64n) - 1n;

/** Checks every field's range and format; throws `InvalidArgumentError` naming the field. Returns it with the server's address checksummed. */
export function validateReceipt(r: Receipt): Receipt {
  checkFields(r);
  let server: string;
  try {
    server = getAddress(r.server);
  } catch (cause) {
    throw new InvalidArgumentError(`receipt.server ${r.server} is not an address`, { cause });
  }
  return { ...r, server };
}

/** Every field but the server's address. */
function checkFields(r: Receipt): void {
  for (const field of ["sessionId", "variantId", "inputHash", "outputHash"] as const) {
    if (!isHexString(r[field], 32)) {
      throw new InvalidArgumentError(`receipt.${field} must be 32 bytes of hex, got ${String(r[field])}`);
    }
  }
  if (r.step < 0n || r.step > UINT64_MAX) throw new InvalidArgumentError(`receipt.step ${r.step} is outside uint64`);
  for (const field of ["firstLayer", "lastLayer"] as const) {
    const v = r[field];
    if (!Number.isInteger(v) || v < 0 || v > UINT16_MAX) {
      throw new InvalidArgumentError(`receipt.${field} ${v} is outside uint16`);
    }
  }
  if (r.firstLayer >= r.lastLayer) {
    throw new InvalidArgumentError(`receipt layer range [${r.firstLayer}, ${r.lastLayer}) is empty`);
  }
  if (!Number.isInteger(r.tokens) || r.tokens < 1 || r.tokens > UINT32_MAX) {
    throw new InvalidArgumentError(`receipt.tokens ${r.tokens} must be an integer in [1, 2^32)`);
  }
}

const RECEIPT_TYPEHASH = typeHashOf(RECEIPT_TYPES, "Receipt");

/**
 * The receipt's EIP-712 struct hash: the same bytes as `ReceiptLib.hash` and its Merkle leaf.
 * Encoded word by word (every field is a static type, so abi.encode is ten 32-byte words): every
 * hop's server and client hash one per step, so it avoids ethers' generic encoder (~0.4 ms) and
 * its address checksum (~20 µs: the address is hashed as its 20 bytes, checked for format only).
 * Hashed with hash-wasm (protocol/keccak.ts).
 */
export function receiptLeaf(r: Receipt): string {
  checkLeafFields(r);
  const words = new Uint8Array(320);
  const view = new DataView(words.buffer);
  words.set(RECEIPT_TYPEHASH, 0);
  words.set(hexBytes(r.sessionId), 32);
  view.setBigUint64(64 + 24, r.step);
  view.setUint16(96 + 30, r.firstLayer);
  view.setUint16(128 + 30, r.lastLayer);
  words.set(hexBytes(r.variantId), 160);
  words.set(hexBytes(r.inputHash), 192);
  words.set(hexBytes(r.outputHash), 224);
  view.setUint32(256 + 28, r.tokens);
  words.set(hexBytes(r.server), 300); // address: left-padded to 32 bytes
  return keccak256Of(words);
}

/** `validateReceipt`'s checks but the address checksum: what hashing a receipt needs. */
function checkLeafFields(r: Receipt): void {
  checkFields(r);
  if (!isHexString(r.server, 20)) throw new InvalidArgumentError(`receipt.server ${r.server} is not an address`);
}

/** The EIP-712 digest the server signs: keccak256(0x1901 ‖ domain separator ‖ struct hash). */
export function receiptDigest(domain: TypedDataDomain, r: Receipt): string {
  return typedDataDigest(domain, receiptLeaf(r));
}

/** Signs `r` with a wallet or any ethers signer (EIP-712 typed data). */
export async function signReceipt(signer: Signer, domain: TypedDataDomain, r: Receipt): Promise<string> {
  return signer.signTypedData(domain, RECEIPT_TYPES, validateReceipt(r));
}

/** Signs `r` with a raw key, without ethers' generic typed-data encoder (the server's hot path). */
export function signReceiptWithKey(key: SigningKey, domain: TypedDataDomain, r: Receipt): string {
  return signDigest(key, receiptDigest(domain, r));
}

/** The address that signed `r`; the signature must be canonical (see `canonicalSignature`), as on chain. */
export function recoverReceiptSigner(domain: TypedDataDomain, r: Receipt, signature: string): string {
  return recoverAddress(receiptDigest(domain, r), canonicalSignature(signature));
}
