import { getBytes, isHexString, toBeHex, type Signer, type SigningKey, type TypedDataDomain } from "ethers";
import { InvalidArgumentError } from "./errors.js";
import { VOUCHER_TYPES, canonicalSignature, typeHashOf, typedDataDigest } from "./eip712.js";
import { keccak256Of } from "./keccak.js";
import { recoverAddress, signDigest } from "./secp256k1.js";

/** The client's promise: it owes `cumulativeAmount` in total on `channelId`. */
export interface Voucher {
  channelId: string;
  cumulativeAmount: bigint;
}

function checked(v: Voucher): Voucher {
  if (!isHexString(v.channelId, 32)) throw new InvalidArgumentError(`voucher.channelId must be 32 bytes of hex, got ${String(v.channelId).slice(0, 80)}`);
  if (v.cumulativeAmount <= 0n || v.cumulativeAmount >= 1n << 256n) {
    throw new InvalidArgumentError(`voucher.cumulativeAmount ${v.cumulativeAmount} must be in (0, 2^256)`);
  }
  return v;
}

const VOUCHER_TYPEHASH = typeHashOf(VOUCHER_TYPES, "Voucher");

/**
 * The EIP-712 digest of `v`: equal to `PaymentChannels.voucherDigest` (and to ethers'
 * TypedDataEncoder.hash), encoded word by word: a client signs, and each priced server checks, one
 * voucher per server and step.
 */
export function voucherDigest(domain: TypedDataDomain, v: Voucher): string {
  const c = checked(v);
  const words = new Uint8Array(3 * 32);
  words.set(VOUCHER_TYPEHASH, 0);
  words.set(getBytes(c.channelId), 32);
  words.set(getBytes(toBeHex(c.cumulativeAmount, 32)), 64);
  return typedDataDigest(domain, keccak256Of(words));
}

/** Signs `v` with the client's key. */
export async function signVoucher(signer: Signer, domain: TypedDataDomain, v: Voucher): Promise<string> {
  return signer.signTypedData(domain, VOUCHER_TYPES, checked(v));
}

/** The address that signed `v`; the signature must be canonical (see `canonicalSignature`), as on chain. */
export function recoverVoucherSigner(domain: TypedDataDomain, v: Voucher, signature: string): string {
  return recoverAddress(voucherDigest(domain, v), canonicalSignature(signature));
}

/** Signs `v` synchronously with a raw key: what a ledger does inside its "read last, sign next" transaction. */
export function signVoucherSync(key: SigningKey, domain: TypedDataDomain, v: Voucher): string {
  return signDigest(key, voucherDigest(domain, v));
}
