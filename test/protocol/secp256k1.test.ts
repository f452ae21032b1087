import { SigningKey, computeAddress, concat, keccak256, recoverAddress, toBeHex } from "ethers";
import { describe, expect, it } from "vitest";
import { ethersSecp256k1, recoverAddress as recoverHere, secp256k1, signDigest, type Secp256k1 } from "../../protocol/secp256k1.js";

const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const HALF_N = N >> 1n;

// Deterministic keys and digests, so a failure reproduces.
const keyOf = (i: number): SigningKey => new SigningKey(keccak256(toBeHex(BigInt(i) + 1n, 32)));
const digestOf = (i: number): string => keccak256(concat(["0x64", toBeHex(i, 32)]));
const key = keyOf(7);
const digest = digestOf(7);
const good = key.sign(digest);

type Outcome = { address: string } | { error: string };

function outcome(f: () => string): Outcome {
  try {
    return { address: f() };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** The 65-byte r‖s‖v hex of the given parts. */
function raw(r: bigint, s: bigint, v: number): string {
  return concat([toBeHex(r, 32), toBeHex(s, 32), toBeHex(v, 1)]);
}

// the ethers backend, and the process's backend (native wherever the binding loads)
const backends: Secp256k1[] = secp256k1.backend === "ethers" ? [ethersSecp256k1] : [ethersSecp256k1, secp256k1];

describe.each(backends.map((b) => [b.backend, b] as const))("secp256k1 backend %s", (_name, backend) => {
  it("signs exactly as SigningKey.sign and recovers exactly as recoverAddress, over 300 keys and digests", () => {
    for (let i = 0; i < 300; i++) {
      const k = keyOf(i);
      const d = digestOf(i);
      const expected = k.sign(d).serialized;
      const signature = backend.signDigest(k, d);
      expect(signature).toBe(expected);
      expect(backend.recoverAddress(d, signature)).toBe(recoverAddress(d, expected));
      expect(backend.recoverAddress(d, signature)).toBe(computeAddress(k.publicKey));
    }
  });

  it("signs digests at and above the group order as ethers does (their RFC 6979 nonces differ in libsecp256k1)", () => {
    for (const d of [toBeHex(N - 1n, 32), toBeHex(N, 32), toBeHex(N + 1n, 32), `0x${"ff".repeat(32)}`]) {
      const signature = backend.signDigest(key, d);
      expect(signature).toBe(key.sign(d).serialized);
      expect(backend.recoverAddress(d, signature)).toBe(computeAddress(key.publicKey));
    }
  });

  it("takes the other encodings ethers takes: 64-byte EIP-2098, v 0/1, EIP-155 v", () => {
    const r = BigInt(good.r);
    const s = BigInt(good.s);
    const signer = computeAddress(key.publicKey);
    for (const signature of [good.compactSerialized, raw(r, s, good.yParity), raw(r, s, 35 + 2 * 5 + good.yParity), raw(r, s, 27 + good.yParity).toUpperCase().replace("0X", "0x")]) {
      expect(outcome(() => backend.recoverAddress(digest, signature))).toEqual({ address: signer });
    }
    // the other parity recovers another key, as in ethers
    const flipped = raw(r, s, 28 - good.yParity);
    const other = outcome(() => backend.recoverAddress(digest, flipped));
    expect(other).toEqual(outcome(() => recoverAddress(digest, flipped)));
    expect(other).not.toEqual({ address: signer });
  });

  it("rejects malformed signatures with ethers' own error", () => {
    const r = BigInt(good.r);
    const s = BigInt(good.s);
    const bad = [
      "0x1234", // 2 bytes
      concat([good.serialized, "0x00"]), // 66 bytes
      good.serialized.slice(0, -2), // 64 bytes of r‖s with the v byte cut: read as EIP-2098, another key
      "0xzz" + good.serialized.slice(4), // not hex
      raw(r, s, 26),
      raw(r, s, 29),
      raw(r, s, 34),
      raw(r, s, 255),
      raw(r, N - s, 27 + good.yParity), // high s with the top bit set: ethers' "non-canonical s"
      raw(0n, s, 27),
      raw(N, s, 27),
      raw(r, 0n, 27),
      raw(2n ** 256n - 1n, s, 27),
    ];
    for (const signature of bad) {
      const expected = outcome(() => recoverAddress(digest, signature));
      expect(outcome(() => backend.recoverAddress(digest, signature)), signature).toEqual(expected);
    }
    expect(outcome(() => recoverAddress(digest, raw(r, s, 26)))).toMatchObject({ error: expect.stringContaining("invalid v") });
    expect(outcome(() => recoverAddress(digest, "0x1234"))).toMatchObject({ error: expect.stringContaining("invalid raw signature length") });
  });

  it("recovers s above n/2 (below 2^255) as ethers does: the contracts reject those, recovery alone does not", () => {
    const s = N - BigInt(good.s); // the malleable twin: (r, n - s, other parity) recovers the same key
    const twin = raw(BigInt(good.r), s, 28 - good.yParity);
    expect(outcome(() => backend.recoverAddress(digest, twin))).toEqual(outcome(() => recoverAddress(digest, twin)));
    for (const high of [HALF_N + 1n, HALF_N + 12345n, 2n ** 255n - 1n]) {
      for (const v of [27, 28]) {
        const signature = raw(BigInt(good.r), high, v);
        expect(outcome(() => backend.recoverAddress(digest, signature)), `s ${high} v ${v}`).toEqual(outcome(() => recoverAddress(digest, signature)));
      }
    }
  });

  it("rejects a digest that is not 32 bytes with ethers' error, when signing and recovering", () => {
    for (const d of ["0x1234", `${digest}00`, "not hex"]) {
      expect(outcome(() => backend.signDigest(key, d))).toEqual(outcome(() => key.sign(d).serialized));
      expect(outcome(() => backend.recoverAddress(d, good.serialized))).toEqual(outcome(() => recoverAddress(d, good.serialized)));
      expect(outcome(() => recoverAddress(d, good.serialized))).toMatchObject({ error: expect.stringMatching(/invalid digest length|invalid BytesLike/) });
    }
  });
});

describe("secp256k1 module functions", () => {
  it("sign and recover on the process's backend, equal to ethers", () => {
    const signature = signDigest(key, digest);
    expect(signature).toBe(good.serialized);
    expect(recoverHere(digest, signature)).toBe(computeAddress(key.publicKey));
    expect(["native", "ethers"]).toContain(secp256k1.backend);
  });
});
