import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { TextTokenizer } from "../../engine/model/tokenizer.js";
import { buildManifest, readManifest, variantIdOf } from "../../engine/model/manifest.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { generatedJson } from "../support/generateOutput.js";

const run = promisify(execFile);
const bin = new URL("../../bin/efed.mjs", import.meta.url).pathname;
const MODEL = new URL("../../models/kjv-llama-6m", import.meta.url).pathname;

describe("the shipped model (models/kjv-llama-6m)", () => {
  it("ships a manifest that matches its weights (the variant id servers announce)", () => {
    const shipped = readManifest(MODEL)!;
    expect(buildManifest(ModelDirectory.open(MODEL))).toEqual(shipped);
    expect(variantIdOf(shipped)).toBe("0xf46aa7fffe8980fb939c078077e7e224690f0932b431f036ce4504671218ced7");
  });

  it("tokenizes with its own tokenizer.json: BOS first, text round-trips", () => {
    const tokenizer = TextTokenizer.load(MODEL);
    const verse = "In the beginning God created the heaven and the earth.";
    const ids = tokenizer.encode(verse);
    expect(ids[0]).toBe(1);
    expect(ids.length).toBeLessThan(verse.length / 2); // merges learned on the corpus, not bytes
    expect(tokenizer.decode(ids)).toBe(verse);
  });

  it("golden: its greedy continuation of a fixed prompt, whole and split into shards", async () => {
    const args = ["generate", "--model", MODEL, "--prompt", "And the LORD said unto Moses", "--max-tokens", "40", "--json"];
    const golden = {
      promptIds: [1, 298, 261, 338, 383, 320, 676],
      generatedIds: [
        47, 1046, 47, 305, 394, 658, 395, 262, 1005, 728, 320, 261, 338, 47, 301, 305, 593, 469, 726, 292, 261, 577, 271, 261, 338, 47, 301,
        305, 593, 469, 726, 292, 362, 301, 305, 398, 821, 320, 395, 49,
      ],
      text: ", Behold, I will give thee a burnt offering unto the LORD, that I may do according to the word of the LORD, that I may do according to all that I have done unto thee.",
      finish: "length",
    };
    for (const extra of [[], ["--split", "3,6"]]) {
      const { stdout } = await run(process.execPath, [bin, ...args, ...extra]);
      expect(generatedJson(stdout)).toEqual(golden);
    }
  });
});
