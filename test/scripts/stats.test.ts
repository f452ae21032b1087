import { describe, expect, it } from "vitest";
import { median, nearestRankPercentile, percentile } from "../../scripts/bench/lib/stats.js";

describe("benchmark statistics (scripts/bench/lib/stats.ts)", () => {
  it("interpolates percentiles between ranks; the median of an even count is the mean of the middle two", () => {
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([5, 1, 3])).toBe(3);
    expect(percentile([10, 20, 30, 40, 50], 90)).toBe(46);
    expect(percentile([7], 99)).toBe(7);
  });

  it("by nearest rank, a percentile is always one of the samples", () => {
    const xs = Array.from({ length: 1000 }, (_, i) => i + 1);
    expect(nearestRankPercentile(xs, 99.9)).toBe(999);
    expect(nearestRankPercentile(xs, 50)).toBe(500);
    expect(nearestRankPercentile([3, 1, 2], 100)).toBe(3);
    expect(nearestRankPercentile([3, 1, 2], 0)).toBe(1);
  });

  it("refuses no samples and a percentile outside 0..100", () => {
    expect(() => median([])).toThrow("percentile of no values");
    expect(() => nearestRankPercentile([1], 101)).toThrow("percentile must be within 0..100, got 101");
    expect(() => percentile([1], -1)).toThrow("percentile must be within 0..100, got -1");
  });
});
