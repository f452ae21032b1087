import { Wallet, ZeroAddress } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelDirectory } from "../../engine/model/modelDir.js";
import { Head } from "../../engine/runtime/head.js";
import { activationHash, decodeActivations, encodeActivations } from "../../protocol/activations.js";
import { receiptDomain } from "../../protocol/eip712.js";
import { receiptLeaf } from "../../protocol/receipt.js";
import { chainOf, recoverReceiptChainSigner } from "../../protocol/receiptChain.js";
import { generate, type LayerPipeline } from "../../client/generate.js";
import { LocalPipeline } from "../../client/localPipeline.js";
import { RemotePipeline, type VerifiedReceipt } from "../../client/remotePipeline.js";
import { randomModel, scratchDir } from "../engine/helpers.js";
import { startServer, type RunningServer } from "../node/support.js";

const scratch = scratchDir();
let model: ModelDirectory;
let head: Head;
let expected: number[];
const PROMPT = [1, 9, 23, 4, 77, 31];
const TOKENS = 64;

beforeAll(async () => {
  model = randomModel(scratch.dir, "route", { num_hidden_layers: 6, hidden_size: 64, max_position_embeddings: 512 });
  head = await Head.load(model);
  const local = await LocalPipeline.load(model);
  expected = (await generate(head, local, PROMPT, { maxTokens: TOKENS, temperature: 0 })).generatedIds;
});
afterAll(() => scratch.cleanup());

async function withRoute<T>(cuts: number[], fn: (servers: RunningServer[]) => Promise<T>): Promise<T> {
  const bounds = [0, ...cuts, model.config.numLayers];
  const servers: RunningServer[] = [];
  try {
    for (let i = 0; i + 1 < bounds.length; i++) servers.push(await startServer(model, bounds[i]!, bounds[i + 1]!, scratch.dir));
    return await fn(servers);
  } finally {
    for (const s of servers) await s.stop();
  }
}

describe("a route of shard servers on loopback", () => {
  for (const forward of [true, false]) {
    for (const cuts of [[3], [2, 4]]) {
      const mode = forward ? "forwarded server to server" : "relayed by the client";
      it(`${cuts.length + 1} servers, ${mode}, with fp32 on the wire give exactly the single-process tokens (64 greedy)`, async () => {
        await withRoute(cuts, async (servers) => {
          const receipts: VerifiedReceipt[] = [];
          const pipeline = await RemotePipeline.connect(
            servers.map((s) => s.server.url),
            model.config.numLayers,
            { forward, onReceipt: (r) => receipts.push(r) },
          );
          expect(pipeline.forwarding).toBe(forward);
          const result = await generate(head, pipeline, PROMPT, { maxTokens: TOKENS, temperature: 0 });
          pipeline.close();
          expect(result.generatedIds).toEqual(expected);

          // one receipt per server per step, each covered by a chain its server signed (every 16 steps and at close), chained hash to hash
          expect(receipts.length).toBe(TOKENS * servers.length);
          const domain = receiptDomain(31337n, ZeroAddress);
          const byServer = servers.map((s) => receipts.filter((r) => r.receipt.server === s.wallet.address));
          for (const [k, mine] of byServer.entries()) {
            expect(mine.map((r) => r.receipt.step)).toEqual(Array.from({ length: TOKENS }, (_, i) => BigInt(i)));
            expect(mine.map((r) => r.chain.lastStep)).toEqual(Array.from({ length: TOKENS }, (_, i) => BigInt(Math.min(16 * Math.floor(i / 16) + 15, TOKENS - 1))));
            for (const { receipt, chain } of mine) {
              expect(chain.head).toBe(chainOf(mine.slice(0, Number(chain.lastStep) + 1).map((r) => receiptLeaf(r.receipt))));
              expect(recoverReceiptChainSigner(domain, chain, chain.signature)).toBe(servers[k]!.wallet.address);
              if (k > 0) expect(receipt.inputHash).toBe(byServer[k - 1]![Number(receipt.step)]!.receipt.outputHash);
            }
          }
          expect(byServer[0]![0]!.receipt.tokens).toBe(PROMPT.length);

          // the stored activations behind every receipt hash to what the receipt says
          for (const { receipt } of receipts) {
            const server = servers.find((s) => s.wallet.address === receipt.server)!;
            const stored = server.store.get(receiptLeaf(receipt));
            expect(stored?.receipt).toEqual(receipt);
            expect(activationHash(stored!.input)).toBe(receipt.inputHash);
            expect(activationHash(stored!.output)).toBe(receipt.outputHash);
          }
          expect(servers.map((s) => s.store.count())).toEqual(servers.map(() => TOKENS));
        });
      });
    }
  }

  it("concurrent sequences over the same connections each get and check their own receipts", async () => {
    await withRoute([3], async (servers) => {
      const receipts: VerifiedReceipt[] = [];
      const pipeline = await RemotePipeline.connect(
        servers.map((s) => s.server.url),
        model.config.numLayers,
        { onReceipt: (r) => receipts.push(r) },
      );
      const runs = await Promise.all([0, 1, 2, 3].map(() => generate(head, pipeline, PROMPT, { maxTokens: 16, temperature: 0 })));
      pipeline.close();
      for (const r of runs) expect(r.generatedIds).toEqual(expected.slice(0, 16));
      expect(receipts.length).toBe(4 * 16 * 2);
      expect(new Set(receipts.map((r) => r.receipt.sessionId)).size).toBe(8);
    });
  });

  it("rejects a server whose receipts are not signed by the address it announces", async () => {
    const server = await startServer(model, 0, model.config.numLayers, scratch.dir, {}, undefined, Wallet.createRandom());
    try {
      const pipeline = await RemotePipeline.connect([server.server.url], model.config.numLayers);
      await expect(generate(head, pipeline, PROMPT, { maxTokens: 3, temperature: 0 })).rejects.toThrow(
        `its receipts through step 2 are signed by`,
      );
      pipeline.close();
    } finally {
      await server.stop();
    }
  });

  for (const encoding of ["fp16", "int8"] as const) {
    it(`${encoding} activations on the wire: the tokens of an in-process run that rounds each hand-over the same way`, async () => {
      // The reference: the same two shards in this process, every hidden state that would cross the
      // wire (client → server 1 → server 2 → client) encoded in `encoding` and decoded again.
      const local = await LocalPipeline.load(model, [3]);
      const roundTrip = (h: Float32Array): Float32Array =>
        decodeActivations(encodeActivations(h, h.length / model.config.hiddenSize, model.config.hiddenSize, encoding));
      const rounded: LayerPipeline = {
        openSequence: async () => {
          const caches = local.shards.map((sh) => sh.newCache());
          return {
            compute: async (hidden) => {
              let h = roundTrip(hidden);
              for (let i = 0; i < local.shards.length; i++) h = roundTrip(await local.shards[i]!.compute(h, caches[i]!));
              return h;
            },
            close: async () => {},
          };
        },
      };
      const reference = (await generate(head, rounded, PROMPT, { maxTokens: TOKENS, temperature: 0 })).generatedIds;
      await local.release();
      await withRoute([3], async (servers) => {
        const pipeline = await RemotePipeline.connect(
          servers.map((s) => s.server.url),
          model.config.numLayers,
          { encoding },
        );
        const result = await generate(head, pipeline, PROMPT, { maxTokens: TOKENS, temperature: 0 });
        pipeline.close();
        expect(result.generatedIds).toEqual(reference);
        // how far the lossy wire keeps the fp32 tokens, reported (sequences diverge after the first difference)
        const firstDiff = result.generatedIds.findIndex((t, i) => t !== expected[i]);
        console.info(`${encoding}: identical prefix ${firstDiff === -1 ? TOKENS : firstDiff} of ${TOKENS} greedy tokens vs fp32`);
      });
    });
  }
});
