import { TypedDataEncoder, dataLength, dataSlice, getBytes, isHexString, keccak256, toBigInt, type TypedDataDomain, type TypedDataField } from "ethers";
import { InvalidArgumentError } from "./errors.js";
import { keccak256Of } from "./keccak.js";

/**
 * EIP-712 domains and types shared by the contracts and the TypeScript side. The names and
 * versions here must match the `EIP712(name, version)` constructors in `contracts/`.
 */
export const RECEIPT_DOMAIN_NAME = "eFed Receipts";
export const VOUCHER_DOMAIN_NAME = "eFed Payment Channels";
export const DOMAIN_VERSION = "1";

/** Mirrors `ReceiptLib.RECEIPT_TYPEHASH`. Field order matters: it is the hashed order. */
export const RECEIPT_TYPES: Record<string, TypedDataField[]> = {
  Receipt: [
    { name: "sessionId", type: "bytes32" },
    { name: "step", type: "uint64" },
    { name: "firstLayer", type: "uint16" },
    { name: "lastLayer", type: "uint16" },
    { name: "variantId", type: "bytes32" },
    { name: "inputHash", type: "bytes32" },
    { name: "outputHash", type: "bytes32" },
    { name: "tokens", type: "uint32" },
    { name: "server", type: "address" },
  ],
};

/**
 * Mirrors `ReceiptLib.RECEIPT_CHAIN_TYPEHASH`: a server's one signature over the hash chain of a
 * session's receipts through `lastStep` (protocol/receiptChain.ts).
 */
export const RECEIPT_CHAIN_TYPES: Record<string, TypedDataField[]> = {
  ReceiptChain: [
    { name: "sessionId", type: "bytes32" },
    { name: "server", type: "address" },
    { name: "lastStep", type: "uint64" },
    { name: "head", type: "bytes32" },
  ],
};

/** Mirrors `PaymentChannels.VOUCHER_TYPEHASH`. */
export const VOUCHER_TYPES: Record<string, TypedDataField[]> = {
  Voucher: [
    { name: "channelId", type: "bytes32" },
    { name: "cumulativeAmount", type: "uint256" },
  ],
};

/** EIP-2612 `Permit` of the token (OpenZeppelin ERC20Permit): deposits and channel opens in one transaction. */
export const PERMIT_TYPES: Record<string, TypedDataField[]> = {
  Permit: [
    { name: "owner", type: "address" },
    { name: "spender", type: "address" },
    { name: "value", type: "uint256" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
};

/** The domain of receipts: the Commitments contract on `chainId` verifies them. */
export function receiptDomain(chainId: bigint, commitments: string): TypedDataDomain {
  return { name: RECEIPT_DOMAIN_NAME, version: DOMAIN_VERSION, chainId, verifyingContract: commitments };
}

/** The domain of vouchers: the PaymentChannels contract on `chainId` verifies them. */
export function voucherDomain(chainId: bigint, paymentChannels: string): TypedDataDomain {
  return { name: VOUCHER_DOMAIN_NAME, version: DOMAIN_VERSION, chainId, verifyingContract: paymentChannels };
}

/** Order of the secp256k1 group; OpenZeppelin's ECDSA rejects s above half of it (malleability). */
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const SECP256K1_HALF_N = SECP256K1_N >> 1n;

/**
 * Checks that `signature` is in the one encoding every eFed check accepts, the one OpenZeppelin's
 * `ECDSA.recover(bytes32, bytes)` accepts on chain: exactly 65 bytes r ‖ s ‖ v, v ∈ {27, 28},
 * 0 < r < n, 0 < s <= n/2. ethers alone also takes 64-byte (EIP-2098) and v ∈ {0, 1} signatures,
 * which the contracts reject; a receipt or voucher accepted off chain must also hold on chain.
 * Returns the signature, lower-cased; throws `InvalidArgumentError` naming what is wrong.
 */
export function canonicalSignature(signature: string): string {
  if (!isHexString(signature) || dataLength(signature) !== 65) {
    const what = isHexString(signature) ? `${dataLength(signature)} bytes` : "not hex";
    throw new InvalidArgumentError(`signature must be 65 bytes r‖s‖v, got ${what}: ${signature.slice(0, 140)}`);
  }
  const v = getBytes(signature)[64]!;
  if (v !== 27 && v !== 28) throw new InvalidArgumentError(`signature v must be 27 or 28, got ${v}`);
  const r = toBigInt(dataSlice(signature, 0, 32));
  const s = toBigInt(dataSlice(signature, 32, 64));
  if (r === 0n || r >= SECP256K1_N) throw new InvalidArgumentError(`signature r 0x${r.toString(16)} is outside (0, n)`);
  if (s === 0n || s > SECP256K1_HALF_N) {
    throw new InvalidArgumentError(`signature s 0x${s.toString(16)} is outside (0, n/2]: malleable or invalid`);
  }
  return signature.toLowerCase();
}

/** keccak256 of `primary`'s encoded type (the struct's type hash), as bytes. */
export function typeHashOf(types: Record<string, TypedDataField[]>, primary: string): Uint8Array {
  return getBytes(keccak256(new TextEncoder().encode(TypedDataEncoder.from(types).encodeType(primary))));
}

const domainSeparators = new Map<string, Uint8Array>();

/**
 * The EIP-712 digest of a struct hash: keccak256(0x1901 ‖ domain separator ‖ struct hash), as
 * ethers' TypedDataEncoder.hash computes it, with the domain separator computed once per domain
 * (ethers hashes the domain again on every call: most of its ~0.4 ms per receipt or ticket).
 */
export function typedDataDigest(domain: TypedDataDomain, structHash: string): string {
  const key = `${String(domain.chainId)}:${String(domain.verifyingContract)}:${String(domain.name)}:${String(domain.version)}`;
  let separator = domainSeparators.get(key);
  if (separator === undefined) {
    separator = getBytes(TypedDataEncoder.hashDomain(domain));
    domainSeparators.set(key, separator);
  }
  const bytes = new Uint8Array(66);
  bytes[0] = 0x19;
  bytes[1] = 0x01;
  bytes.set(separator, 2);
  bytes.set(getBytes(structHash), 34);
  return keccak256Of(bytes);
}
