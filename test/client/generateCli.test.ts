import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { tinyConfig, writeRandomModel } from "../../engine/model/randomModel.js";
import { Head } from "../../engine/runtime/head.js";
import { generate } from "../../client/generate.js";
import { LocalPipeline } from "../../client/localPipeline.js";
import { scratchDir } from "../engine/helpers.js";
import { runEfed } from "../support/efedProcess.js";
import { generatedJson } from "../support/generateOutput.js";

const scratch = scratchDir();
const modelDir = join(scratch.dir, "tiny");

beforeAll(() => {
  writeRandomModel(modelDir, tinyConfig({ eos_token_id: 96 }), { seed: 9, dtype: "F16", std: 0.15 });
});
afterAll(() => scratch.cleanup());

const efed = runEfed;

describe("efed generate", () => {
  it("prints the same ids as the in-process engine, and --split changes nothing", async () => {
    const model = ModelDirectory.open(modelDir);
    const expected = await generate(await Head.load(model), await LocalPipeline.load(model), [1, 5, 9], {
      maxTokens: 24,
      temperature: 0,
      stopTokens: [96],
    });
    const whole = await efed("generate", "--model", modelDir, "--ids", "1,5,9", "--max-tokens", "24", "--json");
    expect(whole.code).toBe(0);
    const parsed = JSON.parse(whole.stdout) as { promptIds: number[]; generatedIds: number[]; text: string | null };
    expect(parsed.promptIds).toEqual([1, 5, 9]);
    expect(parsed.generatedIds).toEqual(expected.generatedIds);
    expect(parsed.generatedIds.length).toBeGreaterThan(0);
    expect(parsed.text).toBeNull(); // a random model ships no tokenizer
    const split = await efed("generate", "--model", modelDir, "--ids", "1,5,9", "--max-tokens", "24", "--json", "--split", "1,3");
    expect(generatedJson(split.stdout)).toEqual(generatedJson(whole.stdout));
  });

  it("samples what the in-process engine samples for the seed, and another seed samples otherwise", async () => {
    const sampling = { temperature: 1.2, topK: 20 };
    const model = ModelDirectory.open(modelDir);
    const head = await Head.load(model);
    const local = await LocalPipeline.load(model);
    const inProcess = async (seed: number): Promise<number[]> =>
      (await generate(head, local, [3, 4], { maxTokens: 16, ...sampling, seed, stopTokens: [96] })).generatedIds;
    const [expected42, expected43] = [await inProcess(42), await inProcess(43)];
    await Promise.all([head.release(), local.release()]);
    model.close();
    expect(expected43).not.toEqual(expected42); // the seed matters for this model and these settings

    const args = ["generate", "--model", modelDir, "--ids", "3,4", "--max-tokens", "16", "--temperature", "1.2", "--top-k", "20", "--json"];
    for (const [seed, expected] of [["42", expected42], ["43", expected43]] as const) {
      const r = await efed(...args, "--seed", seed);
      expect(r.code).toBe(0);
      expect((JSON.parse(r.stdout) as { generatedIds: number[] }).generatedIds).toEqual(expected);
    }
  });

  it("rejects bad flags with a message naming the value", async () => {
    const cases: [string[], string][] = [
      [["--ids", "1,x"], `"1,x" is not a comma-separated list of integers >= 0.`],
      [["--ids", "1", "--max-tokens", "-3"], `"-3" is not an integer in 0..1000000.`],
      [["--ids", "1", "--max-tokens", "2", "--split", "2,1"], "split boundaries must be increasing integers strictly between 0 and 4, got 2,1"],
      [["--ids", "1", "--max-tokens", "2", "--temperature", "hot"], `"hot" is not a number in [0, Infinity].`],
      [["--ids", "500", "--max-tokens", "2"], "token id 500 is outside the vocabulary 0..96"],
      [["--max-tokens", "2"], "give exactly one of --prompt TEXT or --ids 1,2,3"],
      [["--prompt", "hello", "--max-tokens", "2"], "tokenizer.json"],
      [["--ids", "1,5,9", "--max-tokens", "254"], "a prompt of 3 tokens and max tokens 254 make 257 tokens, over the model's context of 256 (max_position_embeddings)"],
    ];
    for (const [args, message] of cases) {
      const r = await efed("generate", "--model", modelDir, ...(args.includes("--max-tokens") ? args : [...args, "--max-tokens", "1"]));
      expect({ args, code: r.code }).toEqual({ args, code: 1 });
      expect(r.stderr).toContain(message);
    }
  });
});
