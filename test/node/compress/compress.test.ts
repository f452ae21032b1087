import { type ChildProcess } from "node:child_process";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildManifest, MANIFEST_FILE, readManifest, variantIdOf, verifyTensors } from "../../../engine/model/manifest.js";
import { ModelDirectory } from "../../../engine/model/modelDir.js";
import { tinyConfig, writeRandomModel } from "../../../engine/model/randomModel.js";
import { layerPrefix } from "../../../engine/model/weights.js";
import { Head } from "../../../engine/runtime/head.js";
import { Shard } from "../../../engine/runtime/shard.js";
import { maxUsefulRank } from "../../../node/compress/allocate.js";
import { compressModel } from "../../../node/compress/compressModel.js";
import { evaluateModel, sampleCorpus } from "../../../node/compress/evaluate.js";
import { bitsEqual, maxAbsDiff, scratchDir } from "../../engine/helpers.js";
import { ReferenceModel } from "../../engine/reference.js";
import { runEfed, spawnEfedServer, stopProcess } from "../../support/efedProcess.js";
import { generatedJson } from "../../support/generateOutput.js";

const kjv = new URL("../../../models/kjv-llama-6m", import.meta.url).pathname;
const scratch = scratchDir();
const dense = join(scratch.dir, "dense");
// small enough to be quick, with the shipped tokenizer so calibration text can be tokenized
const CONFIG = tinyConfig({ vocab_size: 2048, hidden_size: 64, intermediate_size: 96, num_attention_heads: 4, num_key_value_heads: 2, bos_token_id: 1, eos_token_id: 2, max_position_embeddings: 128 });
const CALIB = { calibTokens: 512, calibSeqLength: 64 };
const PROMPT = [1, 17, 42, 8, 93, 5, 60, 33, 71, 2, 14, 88];
const children: ChildProcess[] = [];

beforeAll(() => {
  writeRandomModel(dense, CONFIG, { seed: 11, dtype: "F16", std: 0.15 });
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(kjv, f), join(dense, f));
});
afterAll(async () => {
  await Promise.all(children.map((c) => stopProcess(c)));
  scratch.cleanup();
});

const efed = runEfed;

/** Hidden states after all layers for PROMPT (prefill of 8, then one token at a time), through shards cut at `cuts`. */
async function runShards(model: ModelDirectory, cuts: number[]): Promise<Float32Array[]> {
  const bounds = [0, ...cuts, model.config.numLayers];
  const shards = await Promise.all(bounds.slice(1).map((last, i) => Shard.load(model, bounds[i]!, last)));
  const caches = shards.map((s) => s.newCache());
  const head = await Head.load(model);
  const outputs: Float32Array[] = [];
  const steps = [PROMPT.slice(0, 8), ...PROMPT.slice(8).map((t) => [t])];
  for (const ids of steps) {
    let h = head.embed(ids);
    for (let i = 0; i < shards.length; i++) h = await shards[i]!.compute(h, caches[i]!);
    outputs.push(h);
  }
  await Promise.all([...shards.map((s) => s.release()), head.release()]);
  return outputs;
}

describe("efed compress", () => {
  it("svd-whiten at 40%: ranks under break-even, a manifest naming them, and a variant of its own", async () => {
    const out = join(scratch.dir, "sw40");
    const report = await compressModel(dense, out, { method: "svd-whiten", ratio: 0.4, ...CALIB });
    // at least the ratio is removed, and the greedy budget leaves little unspent
    expect(report.parameterReduction).toBeGreaterThanOrEqual(0.4);
    expect(report.parameterReduction).toBeLessThan(0.41);
    expect(report.calibrationTokens).toBe(512);
    const manifest = readManifest(out)!;
    expect(manifest.compression.method).toBe("svd-whiten");
    expect(manifest.compression.ratio).toBe(0.4);
    expect(report.variantId).toBe(variantIdOf(manifest));
    expect(report.variantId).not.toBe(variantIdOf(buildManifest(ModelDirectory.open(dense))));
    const matrices = manifest.compression.matrices as Record<string, { rank?: number }>;
    for (const m of report.matrices) {
      if (m.rank === "dense") {
        expect(matrices[m.name]).toBeUndefined();
        expect(manifest.tensors[`${m.name}.weight`]).toBeDefined();
      } else {
        expect(matrices[m.name]).toEqual({ rank: m.rank });
        expect(m.rank).toBeLessThanOrEqual(maxUsefulRank(m.rows, m.cols));
        expect(manifest.tensors[`${m.name}.svd_left`]!.shape).toEqual([m.rows, m.rank]);
        expect(manifest.tensors[`${m.name}.svd_right`]!.shape).toEqual([m.rank, m.cols]);
        expect(manifest.tensors[`${m.name}.weight`]).toBeUndefined();
      }
    }
    // a server of layers 1:3 verifies exactly its own tensors against the manifest
    const model = ModelDirectory.open(out);
    const served = Object.keys(manifest.tensors).filter((n) => n.startsWith(layerPrefix(1)) || n.startsWith(layerPrefix(2)));
    expect(served.length).toBeGreaterThan(0);
    expect(() => verifyTensors(model, manifest, served)).not.toThrow();
    // the same inputs give the same model, bit for bit
    const again = await compressModel(dense, join(scratch.dir, "sw40-again"), { method: "svd-whiten", ratio: 0.4, ...CALIB });
    expect(again.variantId).toBe(report.variantId);
  });

  for (const method of ["svd", "svd-whiten+int8", "int4"] as const) {
    it(`${method}: a shard chain gives the unsharded model's hidden states bit for bit`, async () => {
      const out = join(scratch.dir, `split-${method}`);
      await compressModel(dense, out, method === "int4" ? { method } : { method, rank: 12, ...(method === "svd" ? {} : CALIB) });
      const model = ModelDirectory.open(out);
      const whole = await runShards(model, []);
      for (const cuts of [[2], [1, 3]]) {
        const split = await runShards(model, cuts);
        split.forEach((h, i) => expect(bitsEqual(h, whole[i]!)).toBe(true));
      }
    });
  }

  it("quantized and low-rank variants compute the same bits at 1 and 2 threads (a verifier's thread count does not matter)", async () => {
    const out = join(scratch.dir, "threads");
    await compressModel(dense, out, { method: "svd+int4", rank: 12 });
    const model = ModelDirectory.open(out);
    const head = await Head.load(model);
    const outputs: Float32Array[] = [];
    for (const threads of [1, 2]) {
      const shard = await Shard.load(model, 0, model.config.numLayers, { threads });
      outputs.push(await shard.compute(head.embed(PROMPT), shard.newCache()));
      await shard.release();
    }
    expect(bitsEqual(outputs[0]!, outputs[1]!)).toBe(true);
  });

  it("svd: the engine's low-rank graph matches a float64 forward of the factors", async () => {
    const out = join(scratch.dir, "svd-ref");
    await compressModel(dense, out, { method: "svd", ratio: 0.5 });
    const model = ModelDirectory.open(out);
    const reference = new ReferenceModel(model).logits(PROMPT);
    const head = await Head.load(model);
    const shard = await Shard.load(model, 0, model.config.numLayers);
    const logits = await head.logits(await shard.compute(head.embed(PROMPT), shard.newCache()));
    const V = model.config.vocabSize;
    reference.forEach((row, t) => expect(maxAbsDiff(logits.subarray(t * V, (t + 1) * V), row)).toBeLessThan(1e-4));
  });

  it("refuses a ratio outside (0, 1), a rank above break-even, an unknown method and a compressed source", async () => {
    const flagged = await efed("compress", "--model", dense, "--out", join(scratch.dir, "x"), "--method", "svd", "--ratio", "1.5");
    expect(flagged.code).toBe(1);
    expect(flagged.stderr).toContain('"1.5" is not a fraction strictly between 0 and 1.');
    await expect(compressModel(dense, join(scratch.dir, "x"), { method: "svd", ratio: 0 })).rejects.toThrow(
      "--ratio must be a fraction strictly between 0 and 1, got 0",
    );
    await expect(compressModel(dense, join(scratch.dir, "x"), { method: "svd", rank: 40 })).rejects.toThrow(
      "--rank 40 is above the break-even rank of model.layers.0.self_attn.q_proj (64×64): at most 31 stores fewer weights than the dense matrix",
    );
    await expect(compressModel(dense, join(scratch.dir, "x"), { method: "svd-lowrank", ratio: 0.2 })).rejects.toThrow(
      'unknown compression method "svd-lowrank"',
    );
    await expect(compressModel(dense, join(scratch.dir, "x"), { method: "int8", ratio: 0.2 })).rejects.toThrow(
      "--ratio, --energy, --rank and --ranks-from apply to SVD methods, not int8",
    );
    const int8 = join(scratch.dir, "int8");
    await compressModel(dense, int8, { method: "int8" });
    await expect(compressModel(int8, join(scratch.dir, "x"), { method: "svd", ratio: 0.2 })).rejects.toThrow("is already compressed (int8)");
  });

  it("a manifest claiming a rank at or above break-even is refused when the model loads", async () => {
    const out = join(scratch.dir, "tampered");
    await compressModel(dense, out, { method: "svd", rank: 8 });
    const path = join(out, MANIFEST_FILE);
    const manifest = JSON.parse(readFileSync(path, "utf8")) as { compression: { matrices: Record<string, { rank: number }> } };
    manifest.compression.matrices["model.layers.0.self_attn.q_proj"]!.rank = 32;
    writeFileSync(path, JSON.stringify(manifest));
    await expect(Shard.load(ModelDirectory.open(out), 0, 1)).rejects.toThrow(
      "rank 32 of model.layers.0.self_attn.q_proj (64×64) is at or above break-even 32",
    );
  });
});

describe("serving a compressed variant", () => {
  it("two efed server processes of an svd-whiten+int8 variant give the local engine's tokens", async () => {
    const out = join(scratch.dir, "served");
    await compressModel(dense, out, { method: "svd-whiten+int8", ratio: 0.5, ...CALIB });
    const urls = await Promise.all(
      ["0:2", "2:4"].map(async (layers) => {
        const args = ["--model", out, "--layers", layers, "--port", "0", "--store", join(scratch.dir, `served-${layers.replace(":", "-")}.sqlite`), "--forward-private"];
        return (await spawnEfedServer(args, children)).url;
      }),
    );
    const args = ["generate", "--model", out, "--ids", "1,5,9,200", "--max-tokens", "16", "--json"];
    const remote = await efed(...args, "--route", urls.join(","));
    const local = await efed(...args);
    expect(remote.code).toBe(0);
    expect(generatedJson(remote.stdout)).toEqual(generatedJson(local.stdout));
  });
});

describe("efed eval", () => {
  it("samples a reproducible corpus, and a model compared with itself has zero KL", async () => {
    const prompts = ["And God said", "In the beginning"];
    const corpus = await sampleCorpus(dense, prompts, { tokens: 300, seqLength: 40, seed: 3 });
    expect(corpus.reduce((n, s) => n + s.length, 0)).toBeGreaterThanOrEqual(300);
    expect(await sampleCorpus(dense, prompts, { tokens: 300, seqLength: 40, seed: 3 })).toEqual(corpus);
    const self = await evaluateModel(dense, dense, corpus);
    expect(self.meanKl).toBe(0);
    expect(self.p99Kl).toBe(0);
    expect(self.top1Agreement).toBe(1);
    expect(self.perplexityRatio).toBe(1);
    expect(self.positions).toBe(corpus.reduce((n, s) => n + s.length - 1, 0));
    const int4 = join(scratch.dir, "eval-int4");
    await compressModel(dense, int4, { method: "int4" });
    const q = await evaluateModel(dense, int4, corpus);
    expect(q.meanKl).toBeGreaterThan(0);
    expect(q.p99Kl).toBeGreaterThanOrEqual(q.meanKl);
  });
});
