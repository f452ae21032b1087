/**
 * Choosing each projection's rank. A matrix (rows, cols) kept at rank r stores r·(rows + cols)
 * weights instead of rows·cols, so a rank at or above the break-even rows·cols/(rows + cols) saves
 * nothing: such a matrix stays dense.
 */

/** One matrix's spectrum: σᵢ² in descending order (plain or whitened), and its shape. */
export interface Spectrum {
  name: string;
  rows: number;
  cols: number;
  energies: Float64Array;
}

/** A rank, or "dense" when truncating would not save weights. */
export type RankChoice = number | "dense";

export function breakEvenRank(rows: number, cols: number): number {
  return Math.floor((rows * cols) / (rows + cols));
}

/** Largest rank that still stores fewer weights than the dense matrix. */
export function maxUsefulRank(rows: number, cols: number): number {
  const r = breakEvenRank(rows, cols);
  return r * (rows + cols) < rows * cols ? r : r - 1;
}

export function storedParameters(s: { rows: number; cols: number }, choice: RankChoice): number {
  return choice === "dense" ? s.rows * s.cols : choice * (s.rows + s.cols);
}

function total(energies: Float64Array): number {
  let t = 0;
  for (const e of energies) t += e;
  return t;
}

/**
 * Ranks that remove `ratio` of the matrices' weights from one global budget: rank-one slices are
 * taken in order of the fraction of their matrix's energy they keep per stored weight, so weights
 * go where they buy the most. A matrix whose rank would reach break-even is kept dense instead.
 */
export function allocateByRatio(spectra: readonly Spectrum[], ratio: number): Map<string, RankChoice> {
  const dense = spectra.reduce((sum, s) => sum + s.rows * s.cols, 0);
  let budget = Math.floor((1 - ratio) * dense);
  const ranks = new Map<string, RankChoice>(spectra.map((s) => [s.name, 0]));
  const candidates: { s: Spectrum; index: number; gain: number }[] = [];
  for (const s of spectra) {
    const t = total(s.energies);
    const limit = Math.min(maxUsefulRank(s.rows, s.cols), s.energies.length);
    for (let i = 0; i < limit; i++) candidates.push({ s, index: i, gain: t > 0 ? s.energies[i]! / t / (s.rows + s.cols) : 0 });
  }
  // descending gain; within a matrix energies descend, so ties keep the index order
  candidates.sort((a, b) => b.gain - a.gain || a.index - b.index);
  for (const { s, index } of candidates) {
    const current = ranks.get(s.name)!;
    if (current === "dense" || index !== current) continue; // only the next slice of a matrix extends it
    const cost = s.rows + s.cols;
    if (cost > budget) continue;
    budget -= cost;
    ranks.set(s.name, index + 1);
  }
  // Every matrix keeps at least one direction (a rank-0 factor is not a matrix).
  for (const [name, r] of ranks) if (r === 0) ranks.set(name, 1);
  // Leftover budget: matrices at their useful limit go dense when it fits (same loss, few more weights).
  for (const s of spectra) {
    const r = ranks.get(s.name)!;
    if (r === "dense" || r < maxUsefulRank(s.rows, s.cols)) continue;
    const extra = s.rows * s.cols - storedParameters(s, r);
    if (extra <= budget) {
      budget -= extra;
      ranks.set(s.name, "dense");
    }
  }
  return ranks;
}

/**
 * The paper's accuracy threshold: each matrix keeps the fewest singular values holding `energy`
 * of its spectral energy, or stays dense when that rank reaches break-even.
 */
export function allocateByEnergy(spectra: readonly Spectrum[], energy: number): Map<string, RankChoice> {
  const ranks = new Map<string, RankChoice>();
  for (const s of spectra) {
    const t = total(s.energies);
    let kept = 0;
    let rank = 0;
    while (rank < s.energies.length && kept < energy * t) kept += s.energies[rank++]!;
    ranks.set(s.name, rank > maxUsefulRank(s.rows, s.cols) ? "dense" : Math.max(rank, 1));
  }
  return ranks;
}
