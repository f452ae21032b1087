import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ModelFormatError } from "../../engine/errors.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { tinyConfig } from "../../engine/model/randomModel.js";
import { writeSafetensors } from "../../engine/model/safetensorsWriter.js";
import { loadHeadWeights } from "../../engine/model/weights.js";
import { parseCompression } from "../../engine/model/compression.js";
import { buildManifest, writeManifest } from "../../engine/model/manifest.js";
import { dequantize, quantize } from "../../engine/model/projection.js";
import { Head } from "../../engine/runtime/head.js";
import { float32ToBF16Bytes, float32ToF16Bytes, type DType } from "../../protocol/dtype.js";
import { bitsEqual, randomModel, scratchDir } from "./helpers.js";

const scratch = scratchDir();
afterAll(() => scratch.cleanup());
let counter = 0;

const ROWS = 37;
const COLS = 24;
// values that need every bit of each dtype: subnormals, negatives, large and tiny magnitudes
const values = Float32Array.from({ length: ROWS * COLS }, (_, i) => Math.sin(i * 1.7) * 2 ** ((i % 40) - 28));

function encode(dtype: DType): Uint8Array {
  if (dtype === "F16") return float32ToF16Bytes(values);
  if (dtype === "BF16") return float32ToBF16Bytes(values);
  return new Uint8Array(values.buffer.slice(0));
}

/** A model directory whose embedding table (and nothing else that matters here) is in `dtype`. */
function tableDir(dtype: DType): ModelDirectory {
  const dir = join(scratch.dir, `${dtype}-${counter++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, "config.json"), JSON.stringify(tinyConfig({ vocab_size: ROWS, hidden_size: COLS })));
  writeSafetensors(
    join(dir, "model.safetensors"),
    new Map([
      ["pad", { dtype: "U8" as const, shape: [3], data: Uint8Array.of(1, 2, 3) }], // the table does not start at the data section's start
      ["model.embed_tokens.weight", { dtype, shape: [ROWS, COLS], data: encode(dtype) }],
      ["codes", { dtype: "U8" as const, shape: [2, 2], data: Uint8Array.of(1, 2, 3, 4) }],
    ]),
  );
  return ModelDirectory.open(dir);
}

describe("embedding rows read from the model file on demand", () => {
  for (const dtype of ["F32", "F16", "BF16"] as const) {
    it(`${dtype}: any rows, in any order, equal the in-memory table's rows bit for bit`, () => {
      const model = tableDir(dtype);
      const table = model.tensor("model.embed_tokens.weight", [ROWS, COLS]);
      const rows = model.openRows("model.embed_tokens.weight", [ROWS, COLS]);
      const ids = [0, ROWS - 1, 5, 5, 17];
      const expected = new Float32Array(ids.length * COLS);
      ids.forEach((id, t) => expected.set(table.subarray(id * COLS, (id + 1) * COLS), t * COLS));
      expect(bitsEqual(rows.read(ids), expected)).toBe(true);
      expect(bitsEqual(rows.readSpan(3, 30), table.subarray(3 * COLS, 33 * COLS))).toBe(true);
      // into a buffer larger than the span: the rows are a view of its start, the rest untouched
      const into = new Float32Array(31 * COLS).fill(7);
      const span = rows.readSpan(3, 30, into);
      expect([span.buffer === into.buffer, span.length]).toEqual([true, 30 * COLS]);
      expect(bitsEqual(span, table.subarray(3 * COLS, 33 * COLS))).toBe(true);
      expect([...into.subarray(30 * COLS)]).toEqual(Array(COLS).fill(7));
      expect(() => rows.readSpan(3, 30, new Float32Array(30 * COLS - 1))).toThrow(`rows 3…32 of model.embed_tokens.weight are ${30 * COLS} values, the buffer holds ${30 * COLS - 1}`);
      expect(rows.read([]).length).toBe(0);
      rows.close();
      model.close();
    });
  }

  it("kept in memory: the same bits from one read of the file, the same refusals, nothing after close", () => {
    const model = tableDir("BF16");
    const table = model.tensor("model.embed_tokens.weight", [ROWS, COLS]);
    const rows = model.openRows("model.embed_tokens.weight", [ROWS, COLS]);
    rows.keepInMemory();
    const ids = [ROWS - 1, 0, 9, 9];
    const expected = new Float32Array(ids.length * COLS);
    ids.forEach((id, t) => expected.set(table.subarray(id * COLS, (id + 1) * COLS), t * COLS));
    expect(bitsEqual(rows.read(ids), expected)).toBe(true);
    expect(bitsEqual(rows.readSpan(2, 4), table.subarray(2 * COLS, 6 * COLS))).toBe(true);
    const first = rows.read([3]);
    first.fill(0); // a caller's copy: the table is not changed through it
    expect(bitsEqual(rows.read([3]), table.subarray(3 * COLS, 4 * COLS))).toBe(true);
    expect(() => rows.read([ROWS])).toThrow(`rows ${ROWS}…${ROWS} of model.embed_tokens.weight are outside 0..${ROWS - 1}`);
    rows.close();
    expect(() => rows.read([0])).toThrow("rows of model.embed_tokens.weight were read after close()");
    model.close();
  });

  it("refuses rows outside the table, reads after close, a wrong shape and a non-float dtype, naming them", () => {
    const model = tableDir("F32");
    const rows = model.openRows("model.embed_tokens.weight", [ROWS, COLS]);
    expect(() => rows.read([ROWS])).toThrow(`rows ${ROWS}…${ROWS} of model.embed_tokens.weight are outside 0..${ROWS - 1}`);
    expect(() => rows.read([1.5])).toThrow("rows 1.5…1.5 of model.embed_tokens.weight are outside");
    expect(() => rows.readSpan(30, 8)).toThrow("rows 30…37 of model.embed_tokens.weight are outside 0..36");
    rows.close();
    expect(() => rows.read([0])).toThrow(ModelFormatError);
    expect(() => rows.read([0])).toThrow("rows of model.embed_tokens.weight were read after close()");
    expect(() => model.openRows("model.embed_tokens.weight", [COLS, ROWS])).toThrow(`has shape [${ROWS}, ${COLS}], expected [${COLS}, ${ROWS}]`);
    expect(() => model.openRows("pad", [1, 3])).toThrow("tensor pad has shape [3], expected [1, 3]");
    expect(() => model.openRows("codes", [2, 2])).toThrow("tensor codes has unsupported dtype U8 (expected F32, F16 or BF16)");
    expect(() => model.openRows("nope", [1, 1])).toThrow("tensor nope is missing");
    model.close();
  });

  for (const bits of [8, 4] as const) {
    it(`int${bits} blocks: rows are the quantized table's rows dequantized, bit for bit, from the file or kept in memory`, () => {
      const factor = quantize(values, ROWS, COLS, bits, 16); // COLS = 24: the second block of each row is padded
      const dir = join(scratch.dir, `q${bits}-${counter++}`);
      mkdirSync(dir);
      writeFileSync(join(dir, "config.json"), JSON.stringify(tinyConfig({ vocab_size: ROWS, hidden_size: COLS })));
      writeSafetensors(
        join(dir, "model.safetensors"),
        new Map([
          ["model.embed_tokens.weight.qweight", { dtype: "U8" as const, shape: [ROWS, 2, (16 * bits) / 8], data: factor.packed }],
          ["pad", { dtype: "U8" as const, shape: [3], data: Uint8Array.of(1, 2, 3) }],
          ["model.embed_tokens.weight.scales", { dtype: "F32" as const, shape: [ROWS, 2], data: new Uint8Array(factor.scales.buffer) }],
        ]),
      );
      const compression = { method: `head-int${bits}`, block_size: 16, accuracy_level: 0, matrices: { "model.embed_tokens": { bits } } };
      writeManifest(dir, buildManifest(ModelDirectory.open(dir), compression));
      const model = ModelDirectory.open(dir);
      const table = dequantize(factor);
      const ids = [ROWS - 1, 0, 9, 9];
      const expected = new Float32Array(ids.length * COLS);
      ids.forEach((id, t) => expected.set(table.subarray(id * COLS, (id + 1) * COLS), t * COLS));
      const rows = model.openRows("model.embed_tokens.weight", [ROWS, COLS]);
      for (const inMemory of [false, true]) {
        if (inMemory) rows.keepInMemory();
        expect(bitsEqual(rows.read(ids), expected)).toBe(true);
        expect(bitsEqual(rows.readSpan(2, 30), table.subarray(2 * COLS, 32 * COLS))).toBe(true);
        expect(() => rows.read([ROWS])).toThrow(`rows ${ROWS}…${ROWS} of model.embed_tokens.weight.qweight are outside 0..${ROWS - 1}`);
      }
      rows.close();
      expect(() => rows.read([0])).toThrow("rows of model.embed_tokens.weight.qweight were read after close()");
      expect(() => model.openRows("model.embed_tokens.weight", [ROWS, 40])).toThrow(`tensor model.embed_tokens.weight.qweight has shape [${ROWS}, 2, ${2 * bits}], expected [${ROWS}, 3, ${2 * bits}]`);
      model.close();
    });
  }

  it("a head matrix in a compression may be quantized, not factored", () => {
    expect(() => parseCompression({ method: "svd", matrices: { lm_head: { rank: 4 } } }, "m.json")).toThrow("m.json: compression of lm_head must give bits and no rank (it can be quantized, not factored)");
  });

  it("a Head embeds exactly the rows of the in-memory table, and keeps reading after its ModelDirectory is closed", async () => {
    const model = randomModel(scratch.dir, "bf16-model", {}, { dtype: "BF16" });
    const table = loadHeadWeights(model).embed;
    const H = model.config.hiddenSize;
    const head = await Head.load(model);
    model.close();
    const ids = [3, 0, model.config.vocabSize - 1, 3];
    const expected = new Float32Array(ids.length * H);
    ids.forEach((id, t) => expected.set(table.subarray(id * H, (id + 1) * H), t * H));
    expect(bitsEqual(head.embed(ids), expected)).toBe(true);
    expect(() => head.embed([model.config.vocabSize])).toThrow(`token id ${model.config.vocabSize} is outside the vocabulary`);
    await head.release();
  });
});
