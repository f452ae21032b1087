import type { ModelDirectory } from "../engine/model/modelDir.js";
import type { ShardOptions } from "../engine/runtime/shard.js";
import { Shard } from "../engine/runtime/shard.js";
import { InvalidArgumentError } from "../protocol/errors.js";
import type { LayerPipeline, LayerSequence } from "./generate.js";

/**
 * All layers in this process, as one shard or several (split at the given layer boundaries), to
 * check locally that sharding changes nothing.
 */
export class LocalPipeline implements LayerPipeline {
  readonly shards: readonly Shard[];

  private constructor(shards: Shard[]) {
    this.shards = shards;
  }

  static async load(model: ModelDirectory, boundaries: readonly number[] = [], options: ShardOptions = {}): Promise<LocalPipeline> {
    const n = model.config.numLayers;
    const cuts = [0, ...boundaries, n];
    for (let i = 1; i < cuts.length; i++) {
      if (!Number.isInteger(cuts[i]) || cuts[i]! <= cuts[i - 1]!) {
        throw new InvalidArgumentError(
          `split boundaries must be increasing integers strictly between 0 and ${n}, got ${boundaries.join(",")}`,
        );
      }
    }
    const shards: Shard[] = [];
    for (let i = 0; i + 1 < cuts.length; i++) shards.push(await Shard.load(model, cuts[i]!, cuts[i + 1]!, options));
    return new LocalPipeline(shards);
  }

  async openSequence(): Promise<LayerSequence> {
    const caches = this.shards.map((s) => s.newInPlaceCache());
    return {
      compute: async (hidden) => {
        let h = hidden;
        for (let i = 0; i < this.shards.length; i++) h = await this.shards[i]!.compute(h, caches[i]!);
        return h;
      },
      close: async () => {},
    };
  }

  async release(): Promise<void> {
    for (const s of this.shards) await s.release();
  }
}
