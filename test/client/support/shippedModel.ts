import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import { ModelDirectory } from "../../../engine/model/modelDir.js";
import { TextTokenizer } from "../../../engine/model/tokenizer.js";
import { Head } from "../../../engine/runtime/head.js";
import { LocalPipeline } from "../../../client/localPipeline.js";
import { scratchDir } from "../../engine/helpers.js";
import { startServer, type RunningServer } from "../../node/support.js";

/** The shipped model's directory (kjv-llama-6m: 8 layers, a tokenizer, no chat template). */
export const KJV = join(import.meta.dirname, "..", "..", "..", "models", "kjv-llama-6m");

/** The shipped model loaded for a test file: its head, all layers in process, its tokenizer. */
export interface ShippedModel {
  model: ModelDirectory;
  head: Head;
  local: LocalPipeline;
  tokenizer: TextTokenizer;
  release(): Promise<void>;
}

export async function loadShippedModel(): Promise<ShippedModel> {
  const model = ModelDirectory.open(KJV);
  const head = await Head.load(model);
  const local = await LocalPipeline.load(model);
  return {
    model,
    head,
    local,
    tokenizer: TextTokenizer.load(KJV),
    release: async () => {
      await local.release();
      await head.release();
      model.close();
    },
  };
}

/** Shard servers of the shipped model, started by a ShippedModelFixture. */
export interface ShardServers {
  servers: RunningServer[];
  /** The servers' URLs, in route order. */
  urls: string[];
  /** Stops every server. */
  stop(): Promise<void>;
}

export interface ShippedModelFixture {
  /** The loaded model; set once the file's beforeAll hooks have run. */
  readonly loaded: ShippedModel;
  /** Starts one in-process shard server per [first, last) layer range, in order (all stopped if one fails to start). */
  startShards(ranges: readonly (readonly [number, number])[]): Promise<ShardServers>;
}

/**
 * The shipped model for a test file: loaded before its tests, released after them, with a scratch
 * directory for the shard servers the file starts (each test stops the servers it started).
 */
export function useShippedModel(): ShippedModelFixture {
  const scratch = scratchDir();
  let loaded: ShippedModel | undefined;
  beforeAll(async () => {
    loaded = await loadShippedModel();
  });
  afterAll(async () => {
    await loaded?.release();
    scratch.cleanup();
  });
  const fixture: ShippedModelFixture = {
    get loaded(): ShippedModel {
      if (loaded === undefined) throw new Error("the shipped model is not loaded (used outside a test?)");
      return loaded;
    },
    async startShards(ranges) {
      const servers: RunningServer[] = [];
      const stop = async (): Promise<void> => {
        for (const s of servers) await s.stop();
      };
      try {
        for (const [first, last] of ranges) servers.push(await startServer(fixture.loaded.model, first, last, scratch.dir));
      } catch (err) {
        await stop();
        throw err;
      }
      return { servers, urls: servers.map((s) => s.server.url), stop };
    },
  };
  return fixture;
}
