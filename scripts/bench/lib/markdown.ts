/** Small formatting helpers for the gas benchmark's markdown output. */

/** An integer with thousands separators: 1234567 → "1,234,567". */
export function fmtInt(n: bigint | number): string {
  const v = typeof n === "bigint" ? n : BigInt(Math.round(n));
  const neg = v < 0n;
  const digits = (neg ? -v : v).toString();
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return neg ? `-${grouped}` : grouped;
}

/** A non-negative number with `decimals` decimals (integer part grouped): 1234.567 → "1,234.6". */
export function fmtNum(n: number, decimals = 1): string {
  const fixed = n.toFixed(decimals);
  const [int = "0", frac] = fixed.split(".");
  const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return frac === undefined ? grouped : `${grouped}.${frac}`;
}

export type Align = "left" | "right";

/** A GitHub-flavoured markdown table; `align` per column (default left). */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[], align: readonly Align[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length), 3));
  const cell = (text: string, i: number): string =>
    align[i] === "right" ? text.padStart(widths[i] ?? 0) : text.padEnd(widths[i] ?? 0);
  const line = (cells: readonly string[]): string => `| ${header.map((_, i) => cell(cells[i] ?? "", i)).join(" | ")} |`;
  const rule = `| ${widths.map((w, i) => (align[i] === "right" ? `${"-".repeat(w - 1)}:` : "-".repeat(w))).join(" | ")} |`;
  return [line(header), rule, ...rows.map(line)].join("\n");
}
