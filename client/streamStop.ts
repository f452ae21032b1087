/**
 * Ends text at the first of some stop strings while it streams: text that could be the start of a
 * stop string is held back until the next pieces show it is not, so a stop string split across
 * tokens is still found and none of it is ever released.
 */
export class StopMatcher {
  private held = "";
  private stopped = false;
  private readonly longest: number;

  constructor(private readonly stops: readonly string[]) {
    if (stops.some((s) => s.length === 0)) throw new RangeError("a stop string is empty");
    this.longest = Math.max(0, ...stops.map((s) => s.length));
  }

  /** Whether a stop string was found (nothing more is released after it). */
  get done(): boolean {
    return this.stopped;
  }

  /** The part of `piece` (with what was held back) that is certainly before any stop string. */
  push(piece: string): string {
    if (this.stopped) return "";
    const text = this.held + piece;
    let cut = -1;
    for (const s of this.stops) {
      const at = text.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      this.held = "";
      return text.slice(0, cut);
    }
    // keep the longest tail that is a proper prefix of some stop string
    let keep = Math.min(this.longest - 1, text.length);
    while (keep > 0 && !this.stops.some((s) => s.startsWith(text.slice(text.length - keep)))) keep--;
    this.held = text.slice(text.length - keep);
    return text.slice(0, text.length - keep);
  }

  /** What was held back, released when generation ends without a stop string. */
  flush(): string {
    const rest = this.stopped ? "" : this.held;
    this.held = "";
    return rest;
  }
}
