import { hexlify, randomBytes } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelDirectory } from "../../../engine/model/modelDir.js";
import type { Shard } from "../../../engine/runtime/shard.js";
import { ActivationStore } from "../../../node/store/activationStore.js";
import { activationHash, encodeActivations } from "../../../protocol/activations.js";
import { ShardConnection } from "../../../client/shardClient.js";
import { randomModel, scratchDir } from "../../engine/helpers.js";
import { startServer, type RunningServer } from "../support.js";

const scratch = scratchDir();
let model: ModelDirectory;

beforeAll(() => {
  model = randomModel(scratch.dir, "shutdown", { num_hidden_layers: 2, hidden_size: 64 });
});
afterAll(() => scratch.cleanup());

describe("a server stopping", () => {
  it("stores the step that finishes as it stops, and answers it, before its store closes", async () => {
    let stopping: Promise<void> | undefined;
    // the shard starts the server's stop the moment the step's layers are done
    const stopAfterCompute = (real: Shard): Shard => {
      const shard = Object.create(real) as Shard;
      shard.compute = async (hidden, cache) => {
        const out = await real.compute(hidden, cache);
        stopping ??= running.stop(); // \`running\` is set by then: steps come after the server started
        return out;
      };
      return shard;
    };
    const running: RunningServer = await startServer(model, 0, 2, scratch.dir, {}, undefined, undefined, {}, {}, stopAfterCompute);
    const conn = await ShardConnection.connect(running.server.url);
    const sessionId = hexlify(randomBytes(32));
    await conn.openSession(sessionId, 16);
    const H = model.config.hiddenSize;
    const input = encodeActivations(Float32Array.from({ length: 3 * H }, (_, i) => Math.cos(i) / 3), 3, H, "fp32");
    const result = await conn.step({ sessionId, step: 0n, position: 0, outputEncoding: "fp32", input, route: [] });
    await stopping;
    conn.close();

    const store = ActivationStore.open(running.store.path, { retentionMs: 3_600_000, maxBytes: 1 << 30 });
    try {
      const stored = store.getBySession(sessionId, 0n);
      expect(stored?.receipt).toMatchObject({ sessionId, step: 0n, tokens: 3, server: running.wallet.address });
      expect(activationHash(stored!.output)).toBe(activationHash(result.output));
    } finally {
      store.close();
    }
  });
});
