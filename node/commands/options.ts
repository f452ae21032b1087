import { InvalidArgumentError } from "commander";
import { QUANT_ACCURACY_LEVELS, type QuantAccuracyLevel } from "../../engine/model/compression.js";
import { QUANT_BITS, type QuantBits } from "../../engine/model/projection.js";

/** Commander parser for "FIRST:LAST" layer ranges. */
export function layerRange(value: string): { first: number; last: number } {
  const m = /^(\d+):(\d+)$/.exec(value.trim());
  if (m === null) throw new InvalidArgumentError(`"${value}" is not a layer range FIRST:LAST (e.g. 0:12).`);
  const first = Number(m[1]);
  const last = Number(m[2]);
  if (last <= first) throw new InvalidArgumentError(`layer range "${value}" is empty: LAST must be greater than FIRST.`);
  return { first, last };
}

export function positiveInt(max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`"${value}" is not an integer in 1..${max}.`);
    return n;
  };
}

export function nonNegativeInt(max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isInteger(n) || n < 0 || n > max) throw new InvalidArgumentError(`"${value}" is not an integer in 0..${max}.`);
    return n;
  };
}

export function port(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`"${value}" is not a port in 0..65535.`);
  return n;
}

/** A number strictly between 0 and 1 (compression ratios and energy fractions). */
export function fraction(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0 || n >= 1) {
    throw new InvalidArgumentError(`"${value}" is not a fraction strictly between 0 and 1.`);
  }
  return n;
}

/** A MatMulNBits accuracy level a quantized variant may pin (engine/model/compression.ts QUANT_ACCURACY_LEVELS). */
export function accuracyLevel(value: string): QuantAccuracyLevel {
  const n = Number(value);
  if (value.trim() === "" || !(QUANT_ACCURACY_LEVELS as readonly number[]).includes(n)) {
    throw new InvalidArgumentError(`"${value}" is not an accuracy level: give ${QUANT_ACCURACY_LEVELS.join(" or ")}.`);
  }
  return n as QuantAccuracyLevel;
}

/** Bits of quantized weights (engine/model/projection.ts QUANT_BITS). */
export function quantBits(value: string): QuantBits {
  const n = Number(value);
  if (value.trim() === "" || !(QUANT_BITS as readonly number[]).includes(n)) throw new InvalidArgumentError(`"${value}" is not a weight width: give ${QUANT_BITS.join(" or ")}.`);
  return n as QuantBits;
}
