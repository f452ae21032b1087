import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelDirectory } from "../../../engine/model/modelDir.js";
import { tinyConfig, writeRandomModel } from "../../../engine/model/randomModel.js";
import { calibrationSequencesFromIds, readCalibrationIds } from "../../../node/compress/calibration.js";
import { compressModel } from "../../../node/compress/compressModel.js";
import { scratchDir } from "../../engine/helpers.js";

// A model directory with no tokenizer.json: calibration text cannot be read for it.
const scratch = scratchDir();
const dense = join(scratch.dir, "dense");
const CONFIG = tinyConfig({ vocab_size: 256, hidden_size: 32, intermediate_size: 48, num_attention_heads: 4, num_key_value_heads: 2, bos_token_id: 1, max_position_embeddings: 64 });
const CALIB = { calibTokens: 128, calibSeqLength: 32 };

beforeAll(() => writeRandomModel(dense, CONFIG, { seed: 5, dtype: "F32", std: 0.2 }));
afterAll(() => scratch.cleanup());

describe("calibration token ids", () => {
  it("reads integers separated by spaces, commas or as a JSON array", () => {
    const file = join(scratch.dir, "ids.txt");
    writeFileSync(file, "[1, 5,7\n 9 255]\n");
    expect(readCalibrationIds(file, 256)).toEqual([1, 5, 7, 9, 255]);
  });

  it("names the entry that is not a token id of the model", () => {
    const file = join(scratch.dir, "bad.txt");
    writeFileSync(file, "1 2 x7");
    expect(() => readCalibrationIds(file, 256)).toThrow(`${file}: entry 3 is "x7", expected a token id in 0..255`);
    writeFileSync(file, "1 256");
    expect(() => readCalibrationIds(file, 256)).toThrow(`${file}: entry 2 is "256", expected a token id in 0..255`);
    writeFileSync(file, "3 -1");
    expect(() => readCalibrationIds(file, 256)).toThrow(`${file}: entry 2 is "-1", expected a token id in 0..255`);
    expect(() => readCalibrationIds(join(scratch.dir, "missing.txt"), 256)).toThrow(/cannot read calibration ids .*missing\.txt/);
  });

  it("cuts ids into sequences that each start with BOS, dropping a leading BOS and a short tail", () => {
    const model = ModelDirectory.open(dense);
    expect(calibrationSequencesFromIds(model, [1, 10, 11, 12, 13, 14, 15, 16], 100, 4)).toEqual([
      [1, 10, 11, 12],
      [1, 13, 14, 15],
    ]);
    expect(calibrationSequencesFromIds(model, [10, 11, 12, 13, 14, 15], 4, 4)).toEqual([[1, 10, 11, 12]]);
    expect(() => calibrationSequencesFromIds(model, [10, 11], 100, 4)).toThrow("calibration has 2 tokens, fewer than one sequence of 4");
    model.close();
  });
});

describe("svd-whiten without a tokenizer", () => {
  it("calibrates on sequences sampled from the model itself, the same ones every time", async () => {
    const a = await compressModel(dense, join(scratch.dir, "sampled-a"), { method: "svd-whiten", ratio: 0.3, ...CALIB });
    const b = await compressModel(dense, join(scratch.dir, "sampled-b"), { method: "svd-whiten", ratio: 0.3, ...CALIB });
    expect(a.calibrationTokens).toBe(128);
    expect(b.variantId).toBe(a.variantId);
  });

  it("calibrates on the token ids of --calib-ids, and other ids give another variant", async () => {
    const ids = join(scratch.dir, "calib-ids.txt");
    writeFileSync(ids, Array.from({ length: 200 }, (_, i) => (i * 37) % 256).join(" "));
    const given = await compressModel(dense, join(scratch.dir, "ids"), { method: "svd-whiten", ratio: 0.3, calibIds: ids, ...CALIB });
    const sampled = await compressModel(dense, join(scratch.dir, "sampled-c"), { method: "svd-whiten", ratio: 0.3, ...CALIB });
    expect(given.calibrationTokens).toBe(128);
    expect(given.variantId).not.toBe(sampled.variantId);
  });

  it("refuses calibration text it cannot tokenize, and two sources at once", async () => {
    const text = join(scratch.dir, "calib.txt");
    writeFileSync(text, "In the beginning");
    await expect(compressModel(dense, join(scratch.dir, "text"), { method: "svd-whiten", ratio: 0.3, calibFile: text, ...CALIB })).rejects.toThrow(
      `--calib needs ${join(dense, "tokenizer.json")} to read the text with; it does not exist (give --calib-ids instead)`,
    );
    await expect(
      compressModel(dense, join(scratch.dir, "both"), { method: "svd-whiten", ratio: 0.3, calibFile: text, calibIds: text, ...CALIB }),
    ).rejects.toThrow("--calib and --calib-ids are two sources of calibration: give one");
    await expect(compressModel(dense, join(scratch.dir, "svd"), { method: "svd", ratio: 0.3, calibIds: text })).rejects.toThrow(
      "--calib-ids applies to svd-whiten methods, not svd",
    );
  });
});
