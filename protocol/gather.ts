/**
 * Waits while requests keep arriving and fewer than `expected()` wait: `ms` at a time, again after
 * each arrival; returns at once when none wait or enough do, and when a wait brought nobody new.
 * The members of a group that left the previous stage together arrive a little apart, and work
 * started on the first would split the group for every later stage. Used by a server's engine
 * scheduler and by a client's batching LM head.
 */
export async function gatherArrivals(waiting: () => number, expected: () => number, ms: number): Promise<void> {
  if (ms === 0) return;
  let seen = waiting();
  while (seen > 0 && seen < expected()) {
    await new Promise((resolve) => setTimeout(resolve, ms));
    const now = waiting();
    if (now <= seen) return;
    seen = now;
  }
}
