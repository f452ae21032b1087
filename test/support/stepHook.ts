import type { LayerPipeline } from "../../client/generate.js";

/**
 * `pipeline` with `beforeStep(step)` awaited before each step of every sequence (steps counted from
 * 0 per sequence): where a test stops or breaks a server at a chosen point of a generation.
 */
export function beforeEachStep(pipeline: LayerPipeline, beforeStep: (step: number) => Promise<void> | void): LayerPipeline {
  return {
    openSequence: async (maxLength) => {
      const sequence = await pipeline.openSequence(maxLength);
      let step = 0;
      return {
        compute: async (hidden) => {
          await beforeStep(step++);
          return sequence.compute(hidden);
        },
        close: () => sequence.close(),
      };
    },
  };
}
