import { ZeroAddress, concat, getAddress, hexlify, keccak256, randomBytes, toUtf8Bytes } from "ethers";
import { describe, expect, it } from "vitest";
import { INT8_BLOCK, activationHash, decodeActivations, encodeActivations, payloadBytes } from "../../protocol/activations.js";
import { SeededRandom } from "../../engine/random.js";
import { checksumAddress, keccak256Of } from "../../protocol/keccak.js";

function randomValues(n: number, seed = 1): Float32Array {
  const rng = new SeededRandom(seed);
  return Float32Array.from({ length: n }, () => rng.normal() * 3);
}

describe("activation encodings", () => {
  it("fp32 round-trips bit for bit", () => {
    const v = randomValues(3 * 50);
    const e = encodeActivations(v, 3, 50, "fp32");
    expect(e.payload.byteLength).toBe(600);
    expect(decodeActivations(e)).toEqual(v);
  });

  it("fp16 rounds each value to the nearest half", () => {
    const v = randomValues(2 * 40);
    const back = decodeActivations(encodeActivations(v, 2, 40, "fp16"));
    for (let i = 0; i < v.length; i++) expect(Math.abs(back[i]! - v[i]!)).toBeLessThanOrEqual(Math.abs(v[i]!) * 2 ** -11 + 2 ** -25);
  });

  it("int8 keeps each value within half a step of its block's scale, partial last block included", () => {
    const cols = INT8_BLOCK * 2 + 7;
    const v = randomValues(3 * cols);
    const e = encodeActivations(v, 3, cols, "int8");
    expect(e.payload.byteLength).toBe(3 * (3 * 4 + cols));
    expect(payloadBytes("int8", 3, cols)).toBe(e.payload.byteLength);
    const back = decodeActivations(e);
    for (let r = 0; r < 3; r++) {
      for (let c0 = 0; c0 < cols; c0 += INT8_BLOCK) {
        const block = Array.from({ length: Math.min(INT8_BLOCK, cols - c0) }, (_, i) => r * cols + c0 + i);
        const scale = Math.max(...block.map((i) => Math.abs(v[i]!))) / 127;
        for (const i of block) expect(Math.abs(back[i]! - v[i]!)).toBeLessThanOrEqual(scale / 2 + 1e-6);
      }
    }
    expect(decodeActivations(encodeActivations(new Float32Array(cols), 1, cols, "int8"))).toEqual(new Float32Array(cols));
  });

  it("rejects a payload of the wrong size and values that do not fill the shape", () => {
    expect(() => decodeActivations({ encoding: "fp16", rows: 2, cols: 3, payload: new Uint8Array(11) })).toThrow(
      "fp16 activations of shape 2×3 need 12 bytes, got 11",
    );
    expect(() => encodeActivations(new Float32Array(5), 2, 3, "fp32")).toThrow("activations hold 5 values, expected 2×3");
  });
});

describe("activation hash", () => {
  it("is keccak256 of the domain, encoding, shape and payload", () => {
    const e = encodeActivations(Float32Array.of(1, -2), 1, 2, "fp32");
    const header = new Uint8Array(9);
    header[0] = 0;
    new DataView(header.buffer).setUint32(1, 1, true);
    new DataView(header.buffer).setUint32(5, 2, true);
    expect(activationHash(e)).toBe(keccak256(concat([toUtf8Bytes("efed.activations.v1"), header, e.payload])));
  });

  it("binds the encoding and the shape, not just the bytes", () => {
    const v = randomValues(6);
    const a = encodeActivations(v, 2, 3, "fp32");
    const b = { ...a, rows: 3, cols: 2 };
    const c = { ...a, encoding: "fp16" as const };
    expect(new Set([activationHash(a), activationHash(b), activationHash(c)]).size).toBe(3);
  });
});

describe("keccak256Of (WebAssembly Keccak)", () => {
  it("equals ethers' keccak256 of the concatenation, for empty, short and multi-block inputs", () => {
    for (const n of [0, 1, 135, 136, 137, 2336, 10_000]) {
      const data = Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 255);
      const cut = Math.floor(n / 3);
      expect(keccak256Of(data.subarray(0, cut), data.subarray(cut))).toBe(keccak256(data));
    }
  });
});

describe("checksumAddress (EIP-55 on the WebAssembly Keccak)", () => {
  it("equals ethers' getAddress for random addresses in lower, upper and checksummed case", () => {
    for (let i = 0; i < 200; i++) {
      const address = hexlify(randomBytes(20));
      const expected = getAddress(address);
      for (const form of [address, `0x${address.slice(2).toUpperCase()}`, expected]) expect(checksumAddress(form)).toBe(expected);
    }
    expect(checksumAddress(ZeroAddress)).toBe(ZeroAddress);
  });
});
