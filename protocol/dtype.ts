/** Floating-point dtypes eFed reads from safetensors and sends on the wire, with their sizes in bytes. */
export const DTYPE_BYTES = { F32: 4, F16: 2, BF16: 2 } as const;
export type DType = keyof typeof DTYPE_BYTES;

export function isDType(s: string): s is DType {
  return Object.hasOwn(DTYPE_BYTES, s);
}

let f16Table: Float32Array | undefined;

/** All 65,536 half-precision values as float32, built once (256 KiB) so conversion is a lookup. */
function halfTable(): Float32Array {
  if (f16Table !== undefined) return f16Table;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) table[h] = sign * mantissa * 2 ** -24; // subnormal
    else if (exponent === 31) table[h] = mantissa === 0 ? sign * Infinity : NaN;
    else table[h] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  f16Table = table;
  return table;
}

/** Decodes little-endian `bytes` of `dtype` into a new Float32Array (exact: F16 and BF16 embed in F32). */
export function toFloat32(bytes: Uint8Array, dtype: DType): Float32Array {
  return fillAsFloat32(new Float32Array(bytes.byteLength / DTYPE_BYTES[dtype]), dtype, (stored) => stored.set(bytes));
}

/**
 * Fills `out` with its `out.length` values stored as `dtype`: `fill` writes the stored bytes into the
 * view it is given (all of `out` for F32, its upper half for F16/BF16, then widened in place), so a
 * tensor read from disk lands in the array it ends up in. Returns `out`.
 */
export function fillAsFloat32(out: Float32Array, dtype: DType, fill: (stored: Uint8Array) => void): Float32Array {
  const n = out.length;
  fill(new Uint8Array(out.buffer, out.byteOffset + (dtype === "F32" ? 0 : 2 * n), n * DTYPE_BYTES[dtype]));
  return dtype === "F32" ? out : widenInPlace(out, dtype);
}

/**
 * Widens the n 16-bit values of `dtype` held in the upper half of `buffer`'s bytes (bytes 2n…4n) into
 * its n float32 values, in place, and returns `buffer`. Value i is written to bytes 4i…4i+4 only after
 * it is read from bytes 2n+2i…2n+2i+2, which no earlier write reached: one allocation holds both, so a
 * large tensor is read from disk straight into the array it ends up in.
 */
export function widenInPlace(buffer: Float32Array, dtype: "F16" | "BF16"): Float32Array {
  const n = buffer.length;
  const halves = new Uint16Array(buffer.buffer, buffer.byteOffset + 2 * n, n);
  if (dtype === "F16") {
    const table = halfTable();
    for (let i = 0; i < n; i++) buffer[i] = table[halves[i]!]!;
    return buffer;
  }
  // BF16 is the top half of an F32 (an Int32Array: a shifted value stays a small integer, no boxing).
  const bits = new Int32Array(buffer.buffer, buffer.byteOffset, n);
  for (let i = 0; i < n; i++) bits[i] = halves[i]! << 16;
  return buffer;
}

/** Rounds float32 values to the nearest F16 (round-half-even), little-endian bytes. */
export function float32ToF16Bytes(values: Float32Array): Uint8Array {
  const out = new Uint16Array(values.length);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < values.length; i++) {
    f[0] = values[i]!;
    const x = u[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 31) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let half = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const halfway = 1 << (shift - 1);
      if (rem > halfway || (rem === halfway && (half & 1) === 1)) half++;
      out[i] = sign | half;
      continue;
    }
    let half = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++;
    out[i] = sign | half; // a carry into the exponent is the correct rounding (up to infinity)
  }
  return new Uint8Array(out.buffer);
}

/** Rounds float32 values to BF16 (round-half-even), little-endian bytes. */
export function float32ToBF16Bytes(values: Float32Array): Uint8Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = bits[i]!;
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
      out[i] = (x >>> 16) | 0x40; // keep NaN a NaN
      continue;
    }
    const rounding = 0x7fff + ((x >>> 16) & 1);
    out[i] = ((x + rounding) >>> 16) & 0xffff;
  }
  return new Uint8Array(out.buffer);
}
