import { InvalidArgumentError } from "commander";

/** Commander parsers that reject bad flag values with a message naming the value and what was expected. */
export function integer(min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`"${value}" is not an integer in ${min}..${max}.`);
    }
    return n;
  };
}

export function number(min: number, max = Infinity): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`"${value}" is not a number in [${min}, ${max}].`);
    }
    return n;
  };
}

/** A comma-separated list of integers >= min, e.g. "1,2,3". */
export function integerList(min: number): (value: string) => number[] {
  const one = integer(min);
  return (value) => {
    const parts = value.split(",");
    try {
      return parts.map((p) => one(p.trim()));
    } catch {
      throw new InvalidArgumentError(`"${value}" is not a comma-separated list of integers >= ${min}.`);
    }
  };
}
