import { ErrorCode, WireError } from "../../protocol/wire.js";

/** What one client (remote address) may have the server doing at once. */
export interface ClientLoadLimits {
  /** Steps in flight from one address, across all its connections and sessions. */
  maxStepsInFlightPerAddress: number;
  /** Distinct next hops one address's forwarded steps may occupy at once (each is a pooled server link). */
  maxNextHopsPerAddress: number;
}

interface Load {
  steps: number;
  /** Next-hop pool key → steps in flight towards it. */
  nextHops: Map<string, number>;
}

/**
 * The work each client address has in flight, so that one client cannot take more than its share
 * of what all clients share: the engine's queue (steps in flight) and the pool of next-hop links
 * (an attacker naming many next hops that never answer would otherwise park every pooled link).
 */
export class ClientLoads {
  private readonly loads = new Map<string, Load>();

  constructor(private readonly limits: ClientLoadLimits) {}

  /** Takes a step of `address` towards `nextHop` (undefined: no forwarding); returns its release. Throws Busy over a limit. */
  take(address: string, nextHop: string | undefined): () => void {
    const load = this.loads.get(address) ?? { steps: 0, nextHops: new Map<string, number>() };
    if (load.steps >= this.limits.maxStepsInFlightPerAddress) {
      throw new WireError(ErrorCode.Busy, `address ${address} has ${load.steps} steps in flight, its maximum: wait for one to finish`);
    }
    if (nextHop !== undefined && !load.nextHops.has(nextHop) && load.nextHops.size >= this.limits.maxNextHopsPerAddress) {
      throw new WireError(ErrorCode.Busy, `address ${address} has steps in flight to ${load.nextHops.size} next hops, its maximum`);
    }
    load.steps++;
    if (nextHop !== undefined) load.nextHops.set(nextHop, (load.nextHops.get(nextHop) ?? 0) + 1);
    this.loads.set(address, load);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      load.steps--;
      if (nextHop !== undefined) {
        const left = load.nextHops.get(nextHop)! - 1;
        if (left === 0) load.nextHops.delete(nextHop);
        else load.nextHops.set(nextHop, left);
      }
      if (load.steps === 0) this.loads.delete(address);
    };
  }

  /** Steps `address` has in flight. */
  stepsOf(address: string): number {
    return this.loads.get(address)?.steps ?? 0;
  }
}
