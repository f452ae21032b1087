import { describe, expect, it } from "vitest";
import { ClientLoads } from "../../../node/server/clientLoad.js";
import { ErrorCode, WireError } from "../../../protocol/wire.js";

describe("ClientLoads", () => {
  it("bounds one address's steps in flight and the next hops they occupy; other addresses are unaffected", () => {
    const loads = new ClientLoads({ maxStepsInFlightPerAddress: 3, maxNextHopsPerAddress: 2 });
    const a = [loads.take("10.0.0.1", "ws://a:1"), loads.take("10.0.0.1", "ws://b:1")];
    const busy = (f: () => unknown, message: string): void => {
      let err: unknown;
      try {
        f();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(WireError);
      expect((err as WireError).wireCode).toBe(ErrorCode.Busy);
      expect((err as Error).message).toBe(message);
    };
    busy(() => loads.take("10.0.0.1", "ws://c:1"), "address 10.0.0.1 has steps in flight to 2 next hops, its maximum");
    a.push(loads.take("10.0.0.1", "ws://a:1")); // a next hop it already uses
    busy(() => loads.take("10.0.0.1", undefined), "address 10.0.0.1 has 3 steps in flight, its maximum: wait for one to finish");
    const other = loads.take("10.0.0.2", "ws://c:1");
    a[1]!();
    a[1]!(); // releasing twice is harmless
    expect(loads.stepsOf("10.0.0.1")).toBe(2);
    a.push(loads.take("10.0.0.1", "ws://c:1")); // ws://b:1 is free again, so a new next hop fits
    for (const release of [...a, other]) release();
    expect([loads.stepsOf("10.0.0.1"), loads.stepsOf("10.0.0.2")]).toEqual([0, 0]);
  });
});
