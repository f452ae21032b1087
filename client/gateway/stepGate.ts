import type { LayerPipeline, LayerSequence } from "../generate.js";

/**
 * A pipeline whose sequences run at most `maxSteps` steps at once; more wait their turn, first come
 * first served. A gateway is one client address to the servers of its route, and a server refuses
 * (`Busy`) steps over its `--max-steps-in-flight-per-address` (default 16): without the gate, the
 * 17th concurrent request would fail instead of waiting. A forwarded step still counts on the first
 * server until the route has answered it, a moment after its output reached the client, so a
 * sequence can have two steps counted there: half the servers' limit is the safe gate (default 8).
 */
export function gateSteps(pipeline: LayerPipeline, maxSteps = 8): LayerPipeline {
  if (!Number.isInteger(maxSteps) || maxSteps < 1) throw new RangeError(`max steps in flight must be an integer >= 1, got ${maxSteps}`);
  let running = 0;
  const waiting: (() => void)[] = [];
  const acquire = (): Promise<void> | undefined => {
    if (running < maxSteps) {
      running++;
      return undefined;
    }
    return new Promise((resolve) => waiting.push(resolve)); // the slot passes straight to the waiter
  };
  const release = (): void => {
    const next = waiting.shift();
    if (next === undefined) running--;
    else next();
  };
  return {
    openSequence: async (maxLength) => {
      const sequence: LayerSequence = await pipeline.openSequence(maxLength);
      return {
        ...sequence,
        compute: async (hidden) => {
          await acquire();
          try {
            return await sequence.compute(hidden);
          } finally {
            release();
          }
        },
        close: () => sequence.close(),
      };
    },
  };
}
