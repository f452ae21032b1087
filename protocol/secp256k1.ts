import { createRequire } from "node:module";
import { Signature, recoverAddress as ethersRecoverAddress, type SigningKey } from "ethers";
import { createKeccak } from "hash-wasm";
import { checksumAddress } from "./keccak.js";

/**
 * Signing of 32-byte digests and recovery of the signer's address, byte-identical to ethers'
 * `SigningKey.sign(digest).serialized` and `recoverAddress(digest, signature)`, on libsecp256k1
 * when its N-API binding loads (sign ~40 µs, recover ~75 µs against ethers' ~300 µs and ~1,800 µs
 * of JavaScript), on ethers otherwise. Every server signs, and every client recovers, a receipt chain
 * per run of steps (protocol/receiptChain.ts), and vouchers and tickets are signed per payment.
 *
 * Identical, input for input: both sign with RFC 6979 nonces and low s, so the signatures are the
 * same bytes. Whatever the fast path does not handle itself (a signature in another encoding than
 * 65-byte r‖s‖v with v 27/28, a failed recovery, a digest at or above the group order) goes to
 * ethers, so the accepted inputs, the results and the errors are ethers' own.
 */
export interface Secp256k1 {
  /** "native" (libsecp256k1) or "ethers" (the fallback, pure JavaScript). */
  readonly backend: "native" | "ethers";
  /** `key.sign(digest).serialized`: 65-byte r‖s‖v hex, v 27/28, low s. */
  signDigest(key: SigningKey, digest: string): string;
  /** `recoverAddress(digest, signature)`: the checksummed address that signed `digest`. */
  recoverAddress(digest: string, signature: string): string;
}

/** The subset of the `secp256k1` package used here. */
interface NativeBinding {
  ecdsaSign(message: Uint8Array, privateKey: Uint8Array): { signature: Uint8Array; recid: number };
  ecdsaRecover(signature: Uint8Array, recid: number, message: Uint8Array, compressed: false): Uint8Array;
}

/** The ethers backend: what the native one must equal. */
export const ethersSecp256k1: Secp256k1 = {
  backend: "ethers",
  signDigest: (key, digest) => key.sign(digest).serialized,
  recoverAddress: (digest, signature) => ethersRecoverAddress(digest, signature),
};

// keccak of a 64-byte public key: 1 µs in hash-wasm against 17 µs in ethers (measured)
const keccak = await createKeccak(256);
const HEX_32 = /^0x[0-9a-fA-F]{64}$/;
const HEX_65 = /^0x[0-9a-fA-F]{130}$/;

/** EIP-55 checksummed address of an uncompressed public key (0x04 ‖ x ‖ y), as ethers' `computeAddress`. */
function addressOf(publicKey: Uint8Array): string {
  keccak.init();
  keccak.update(publicKey.subarray(1));
  return checksumAddress(`0x${(keccak.digest("hex") as string).slice(24)}`);
}

/**
 * libsecp256k1 (v0.1 as bundled) feeds the digest to RFC 6979 unreduced, ethers (noble) reduces
 * it mod n first: the nonces, hence the signatures, differ only for a digest >= n. Such a digest
 * starts with 15 bytes of 0xff (n = 0xff…fe baae…); those go to ethers (a keccak hash is one with
 * probability 2^-120).
 */
function mayReachOrder(digest: Uint8Array): boolean {
  for (let i = 0; i < 15; i++) if (digest[i] !== 0xff) return false;
  return true;
}

function nativeBackend(binding: NativeBinding): Secp256k1 {
  const privateKeys = new WeakMap<SigningKey, Uint8Array>();
  const keyBytes = (key: SigningKey): Uint8Array => {
    let bytes = privateKeys.get(key);
    if (bytes === undefined) {
      bytes = Buffer.from(key.privateKey.slice(2), "hex");
      privateKeys.set(key, bytes);
    }
    return bytes;
  };
  return {
    backend: "native",
    signDigest(key, digest) {
      if (!HEX_32.test(digest)) return ethersSecp256k1.signDigest(key, digest);
      const message = Buffer.from(digest.slice(2), "hex");
      if (mayReachOrder(message)) return ethersSecp256k1.signDigest(key, digest);
      const { signature, recid } = binding.ecdsaSign(message, keyBytes(key));
      return `0x${Buffer.from(signature).toString("hex")}${recid === 0 ? "1b" : "1c"}`;
    },
    recoverAddress(digest, signature) {
      if (!HEX_32.test(digest)) return ethersSecp256k1.recoverAddress(digest, signature);
      let rs: Uint8Array;
      let yParity: number;
      const v = HEX_65.test(signature) ? parseInt(signature.slice(130, 132), 16) : -1;
      if ((v === 27 || v === 28) && parseInt(signature.slice(66, 68), 16) < 0x80) {
        rs = Buffer.from(signature.slice(2, 130), "hex");
        yParity = v - 27;
      } else {
        // any other encoding ethers takes (64-byte EIP-2098, v 0/1 or EIP-155), or its error
        const sig = Signature.from(signature);
        rs = Buffer.from(sig.r.slice(2) + sig.s.slice(2), "hex");
        yParity = sig.yParity;
      }
      let publicKey: Uint8Array;
      try {
        publicKey = binding.ecdsaRecover(rs, yParity, Buffer.from(digest.slice(2), "hex"), false);
      } catch {
        // r or s out of range, or no point for r: ethers names what is wrong
        return ethersSecp256k1.recoverAddress(digest, signature);
      }
      return addressOf(publicKey);
    },
  };
}

/** Loads the binding itself (not the package's index, which would fall back to its own JavaScript silently). */
function loadNative(): NativeBinding | undefined {
  try {
    return createRequire(import.meta.url)("secp256k1/bindings.js") as NativeBinding;
  } catch {
    return undefined;
  }
}

const native = loadNative();

/** The process's backend: libsecp256k1 when its binding loads, ethers otherwise. */
export const secp256k1: Secp256k1 = native === undefined ? ethersSecp256k1 : nativeBackend(native);

/** `key.sign(digest).serialized`, on the process's backend. */
export function signDigest(key: SigningKey, digest: string): string {
  return secp256k1.signDigest(key, digest);
}

/** `recoverAddress(digest, signature)` from ethers, on the process's backend. */
export function recoverAddress(digest: string, signature: string): string {
  return secp256k1.recoverAddress(digest, signature);
}
