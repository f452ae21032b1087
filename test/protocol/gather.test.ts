import { setImmediate as endOfTurn } from "node:timers/promises";
import { afterEach, describe, expect, it, vi } from "vitest";
import { gatherArrivals } from "../../protocol/gather.js";

afterEach(() => vi.useRealTimers());

describe("gatherArrivals", () => {
  it("takes a group whose members are queued later in the same turn without waiting for the timer", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout"] }); // a timer wait would never end
    let waiting = 1;
    let done = false;
    void gatherArrivals(() => waiting, () => 3, 2).then(() => (done = true));
    // the rest of the group, read in the same chunk, is queued by promise continuations
    await Promise.resolve().then(() => waiting++);
    waiting++;
    await endOfTurn();
    await endOfTurn();
    expect(done).toBe(true);
  });

  it("waits a timer at a time while members keep arriving, and stops when a wait brings nobody", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout"] });
    let waiting = 1;
    let done = false;
    void gatherArrivals(() => waiting, () => 4, 2).then(() => (done = true));
    await endOfTurn();
    expect(done).toBe(false);
    waiting = 2;
    await vi.advanceTimersByTimeAsync(2);
    await endOfTurn();
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(2); // nobody new
    await endOfTurn();
    expect(done).toBe(true);
  });
});
