/**
 * The one statistics helper of the benchmarks: order statistics of measured samples. Percentiles
 * interpolate linearly between the two nearest ranks (the median of an even count is the mean of
 * the middle two), so a percentile of one sample is that sample.
 */

/** The p-th percentile (0..100) of `values`; throws on an empty list or a p outside 0..100. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new RangeError("percentile of no values");
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const below = Math.floor(rank);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below]! + (sorted[above]! - sorted[below]!) * (rank - below);
}

/** The median of `values` (the 50th percentile). */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/**
 * The p-th percentile (0..100) by nearest rank: always one of the samples. For tails of measured
 * noise, where interpolating between the two largest samples would report a value nobody observed.
 */
export function nearestRankPercentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new RangeError("percentile of no values");
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  const sorted = [...values].sort((a, b) => a - b);
  // (p · n) / 100, not p / 100 · n: 99.9 / 100 · 1000 rounds to just above 999 and would take the next rank
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p * sorted.length) / 100) - 1))]!;
}

/** The arithmetic mean of `values`; throws on an empty list. For a cost that comes every few samples, which a median hides. */
export function mean(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError("mean of no values");
  return values.reduce((a, v) => a + v, 0) / values.length;
}
