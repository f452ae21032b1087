import { TypedDataEncoder, getAddress, isHexString, verifyTypedData, type Signer, type TypedDataDomain } from "ethers";
import { InvalidArgumentError } from "./errors.js";
import { RECEIPT_TYPES } from "./eip712.js";

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

/** Checks every field's range and format; throws `InvalidArgumentError` naming the field. */
export function validateReceipt(r: Receipt): Receipt {
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
  let server: string;
  try {
    server = getAddress(r.server);
  } catch (cause) {
    throw new InvalidArgumentError(`receipt.server ${r.server} is not an address`, { cause });
  }
  return { ...r, server };
}

/** The receipt's EIP-712 struct hash: the same bytes as `ReceiptLib.hash` and its Merkle leaf. */
export function receiptLeaf(r: Receipt): string {
  return TypedDataEncoder.hashStruct("Receipt", RECEIPT_TYPES, validateReceipt(r));
}

/** The EIP-712 digest the server signs. */
export function receiptDigest(domain: TypedDataDomain, r: Receipt): string {
  return TypedDataEncoder.hash(domain, RECEIPT_TYPES, validateReceipt(r));
}

/** Signs `r` with the server's key. */
export async function signReceipt(signer: Signer, domain: TypedDataDomain, r: Receipt): Promise<string> {
  return signer.signTypedData(domain, RECEIPT_TYPES, validateReceipt(r));
}

/** The address that signed `r`. */
export function recoverReceiptSigner(domain: TypedDataDomain, r: Receipt, signature: string): string {
  return verifyTypedData(domain, RECEIPT_TYPES, validateReceipt(r), signature);
}
