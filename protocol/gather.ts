/**
 * Waits while requests keep arriving and fewer than `expected()` wait: first to the end of this turn
 * of the event loop (a group the previous stage wrote at once, turnWrites.ts, is read at once, and
 * its members are all queued by then), then `ms` at a time, again after each arrival; returns at
 * once when none wait or enough do, and when a wait brought nobody new. The members of a group that
 * left the previous stage together may still arrive a little apart, and work started on the first
 * would split the group for every later stage. Used by a server's engine scheduler and by a client's
 * batching LM head.
 */
export async function gatherArrivals(waiting: () => number, expected: () => number, ms: number): Promise<void> {
  if (ms === 0) return;
  let seen = waiting();
  if (seen > 0 && seen < expected()) {
    await new Promise((resolve) => setImmediate(resolve));
    seen = waiting();
  }
  while (seen > 0 && seen < expected()) {
    await new Promise((resolve) => setTimeout(resolve, ms));
    const now = waiting();
    if (now <= seen) return;
    seen = now;
  }
}
