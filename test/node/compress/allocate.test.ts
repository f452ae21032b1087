import { describe, expect, it } from "vitest";
import { allocateByEnergy, allocateByRatio, breakEvenRank, maxUsefulRank, storedParameters, type Spectrum } from "../../../node/compress/allocate.js";

function spectrum(name: string, rows: number, cols: number, energy: (i: number) => number): Spectrum {
  return { name, rows, cols, energies: Float64Array.from({ length: Math.min(rows, cols) }, (_, i) => energy(i)) };
}

describe("rank allocation", () => {
  it("break-even: a rank stores fewer weights than the dense matrix only below rows·cols/(rows+cols)", () => {
    expect(breakEvenRank(256, 256)).toBe(128);
    expect(maxUsefulRank(256, 256)).toBe(127); // 128·512 = 256·256 saves nothing
    expect(breakEvenRank(128, 256)).toBe(85);
    expect(maxUsefulRank(128, 256)).toBe(85); // 85·384 = 32,640 < 32,768
  });

  it("spends one global budget where energy per weight is highest, within the ratio", () => {
    const fast = spectrum("fast", 64, 64, (i) => 0.5 ** i); // energy concentrated in few directions
    const flat = spectrum("flat", 64, 64, () => 1); // every direction matters equally
    const ranks = allocateByRatio([fast, flat], 0.5);
    const stored = storedParameters(fast, ranks.get("fast")!) + storedParameters(flat, ranks.get("flat")!);
    expect(stored).toBeLessThanOrEqual(0.5 * 2 * 64 * 64);
    // the flat matrix needs the weights; the fast one is almost lossless at a small rank
    expect(ranks.get("fast")).toBeLessThan(10);
    expect(ranks.get("flat")).toBe(Math.floor((0.5 * 2 * 64 * 64) / 128) - (ranks.get("fast") as number));
    expect(ranks.get("flat")).toBeLessThanOrEqual(maxUsefulRank(64, 64));
  });

  it("a matrix whose useful rank is exhausted goes dense when the budget allows", () => {
    const flat = spectrum("flat", 16, 16, () => 1);
    const ranks = allocateByRatio([flat, spectrum("other", 16, 16, (i) => 0.1 ** i)], 0.1);
    // budget 460: other's first two slices (0.9, 0.09 of its energy per 32 weights) beat flat's
    // (1/16 each); flat then fills its 7 useful slices and turns dense (9/16 for 32 more weights);
    // the remaining 460 − 64 − 256 = 140 buy other 4 more slices
    expect(ranks.get("flat")).toBe("dense");
    expect(ranks.get("other")).toBe(6);
  });

  it("energy threshold: the fewest singular values holding that fraction, dense at break-even", () => {
    const s = spectrum("m", 32, 32, (i) => 0.5 ** i); // cumulative 1/2, 3/4, 7/8, …
    expect(allocateByEnergy([s], 0.8).get("m")).toBe(3);
    expect(allocateByEnergy([s], 0.5).get("m")).toBe(1);
    expect(allocateByEnergy([spectrum("flat", 32, 32, () => 1)], 0.9).get("flat")).toBe("dense"); // 29 > 15
  });
});
