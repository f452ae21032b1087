/** How the page writes numbers and names. */

const WEI_PER_TOKEN = 10n ** 18n;

/** Token base units (a decimal string) as tokens with up to `digits` decimals, e.g. "12.5 EFED". */
export function tokens(wei: string, digits = 4): string {
  const v = BigInt(wei);
  const sign = v < 0n ? "-" : "";
  const abs = v < 0n ? -v : v;
  const whole = abs / WEI_PER_TOKEN;
  const scale = 10n ** BigInt(digits);
  const frac = ((abs % WEI_PER_TOKEN) * scale) / WEI_PER_TOKEN;
  const fracText = frac === 0n ? "" : `.${frac.toString().padStart(digits, "0").replace(/0+$/, "")}`;
  return `${sign}${whole.toLocaleString("en-US")}${fracText} EFED`;
}

/** 0x1234…abcd */
export function short(hex: string): string {
  return hex.length <= 12 ? hex : `${hex.slice(0, 6)}…${hex.slice(-4)}`;
}

const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#db2777", "#65a30d", "#7c3aed", "#ea580c", "#0d9488"];

/** A stable colour per address, the same in every panel. */
export function colorOf(address: string): string {
  let h = 0;
  for (const ch of address.toLowerCase()) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length]!;
}

export function percent(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}
