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
 * Ranks that remove `ratio` of the matrices' weights from one global budget. Greedily, the next
 * weights go to whichever matrix keeps the most of its spectral energy (as a fraction of its
 * total) per stored weight: its next rank-one slice, or — once its rank reaches the useful limit —
 * turning dense, which keeps everything the slices beyond the limit hold.
 */
export function allocateByRatio(spectra: readonly Spectrum[], ratio: number): Map<string, RankChoice> {
  let budget = Math.floor((1 - ratio) * spectra.reduce((sum, s) => sum + s.rows * s.cols, 0));
  const state = spectra.map((s) => ({ s, choice: 0 as RankChoice, total: total(s.energies), limit: Math.min(maxUsefulRank(s.rows, s.cols), s.energies.length) }));
  for (;;) {
    let best: { entry: (typeof state)[number]; cost: number; gain: number } | undefined;
    for (const entry of state) {
      const { s, choice, total: t, limit } = entry;
      if (choice === "dense" || t === 0) continue;
      let cost: number;
      let kept: number;
      if (choice < limit) {
        cost = s.rows + s.cols;
        kept = s.energies[choice]!;
      } else {
        cost = s.rows * s.cols - storedParameters(s, choice);
        kept = 0;
        for (let i = choice; i < s.energies.length; i++) kept += s.energies[i]!;
      }
      const gain = kept / t / cost;
      if (cost <= budget && gain > 0 && (best === undefined || gain > best.gain)) best = { entry, cost, gain };
    }
    if (best === undefined) break;
    budget -= best.cost;
    const { entry } = best;
    entry.choice = entry.choice !== "dense" && entry.choice < entry.limit ? entry.choice + 1 : "dense";
  }
  // Every matrix keeps at least one direction (a rank-0 factor is not a matrix).
  return new Map(state.map(({ s, choice }) => [s.name, choice === 0 ? 1 : choice]));
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
