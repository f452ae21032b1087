import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ModelDirectory } from "../../../engine/model/modelDir.js";
import { readManifest } from "../../../engine/model/manifest.js";
import { GgmlType, GgufValueType, type GgufValue } from "../../../engine/model/gguf/format.js";
import { GgufFile } from "../../../engine/model/gguf/reader.js";
import { writeGguf } from "../../../engine/model/gguf/writer.js";
import { dequantizeGgmlBlocks, fromGgmlBlocks, toGgmlBlocks } from "../../../engine/model/gguf/blocks.js";
import { compressModel } from "../../../node/compress/compressModel.js";
import { dequantize, quantize } from "../../../engine/model/projection.js";
import { exportGguf } from "../../../node/convert/exportGguf.js";
import { importGguf } from "../../../node/convert/importGguf.js";
import { reorderRotaryRows } from "../../../node/convert/llamaTensors.js";
import { Head } from "../../../engine/runtime/head.js";
import { generate } from "../../../client/generate.js";
import { LocalPipeline } from "../../../client/localPipeline.js";
import { runEfed } from "../../support/efedProcess.js";
import { randomModel } from "../../engine/helpers.js";

const MODEL = new URL("../../../models/kjv-llama-6m", import.meta.url).pathname;
const scratch = mkdtempSync(join(tmpdir(), "efed-gguf-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The model's greedy continuation of a fixed prompt ("And the LORD said unto Moses"). */
async function greedy(dir: string): Promise<number[]> {
  const model = ModelDirectory.open(dir);
  try {
    const pipeline = await LocalPipeline.load(model);
    return (await generate(await Head.load(model), pipeline, [1, 298, 261, 338, 383, 320, 676], { maxTokens: 24, temperature: 0 })).generatedIds;
  } finally {
    model.close();
  }
}

/** Every tensor of a model directory as float32 bytes (dense) or raw bytes (quantized codes), by name. */
function tensorsOf(dir: string): Map<string, Buffer> {
  const model = ModelDirectory.open(dir);
  const out = new Map<string, Buffer>();
  for (const name of model.tensorNames()) {
    const info = model.info(name);
    const bytes = info.dtype === "U8" ? model.rawBytes(name) : new Uint8Array(model.tensor(name, info.shape).buffer);
    out.set(name, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }
  model.close();
  return out;
}

/** Names of the tensors whose values differ between two models (or that one of them lacks). */
function differingTensors(a: Map<string, Buffer>, b: Map<string, Buffer>): string[] {
  const names = new Set([...a.keys(), ...b.keys()]);
  return [...names].filter((name) => !(a.get(name)?.equals(b.get(name) ?? Buffer.alloc(0)) ?? false)).sort();
}

describe("efed convert: GGUF both ways", () => {
  it("exports the shipped model to GGUF and imports it back with the same weights, tokenizer and greedy tokens", async () => {
    const gguf = join(scratch, "kjv-f16.gguf");
    const report = exportGguf(MODEL, gguf);
    expect(report).toEqual({ file: gguf, tensors: 74, fileType: "F16", maxScaleRounding: 0 });
    const file = GgufFile.open(gguf);
    expect(file.metadata.get("general.architecture")).toEqual({ type: GgufValueType.STRING, value: "llama" });
    expect(file.metadata.get("llama.block_count")).toEqual({ type: GgufValueType.UINT32, value: 8 });
    expect(file.metadata.get("tokenizer.ggml.model")).toEqual({ type: GgufValueType.STRING, value: "gpt2" });
    expect(file.info("blk.0.attn_q.weight")).toMatchObject({ dims: [256, 256], type: GgmlType.F16 });
    expect(file.info("blk.0.attn_k.weight")).toMatchObject({ dims: [256, 128], type: GgmlType.F16 });
    expect(file.info("blk.0.attn_norm.weight")).toMatchObject({ dims: [256], type: GgmlType.F32 });
    expect(file.tensors.has("output.weight")).toBe(false); // tied to the embeddings
    file.close();

    const imported = join(scratch, "kjv-imported");
    const back = importGguf(gguf, imported);
    expect(back.types).toEqual({ F16: 57 });
    expect(back.tokenizerLeftOut).toBeUndefined();
    expect(differingTensors(tensorsOf(imported), tensorsOf(MODEL))).toEqual([]);
    expect(await greedy(imported)).toEqual(await greedy(MODEL));
  });

  it("import → export → import is exact for int8 (Q8_0) and int4 (Q4_0) variants, which keep their blocks and generate alike", async () => {
    for (const method of ["int8", "int4"] as const) {
      const variant = join(scratch, method);
      await compressModel(MODEL, variant, { method });
      const first = join(scratch, `${method}.gguf`);
      expect(exportGguf(variant, first).fileType).toBe(method === "int8" ? "Q8_0" : "Q4_0");
      const imported = join(scratch, `${method}-imported`);
      const report = importGguf(first, imported);
      expect(report.types).toEqual({ F16: 1, [method === "int8" ? "Q8_0" : "Q4_0"]: 56 });
      expect(readManifest(imported)!.compression).toMatchObject({ method, block_size: 32, accuracy_level: method === "int8" ? 4 : 0 });
      const second = join(scratch, `${method}-again.gguf`);
      exportGguf(imported, second);
      const reimported = join(scratch, `${method}-reimported`);
      const again = importGguf(second, reimported);
      expect(again.variantId).toBe(report.variantId);
      expect(differingTensors(tensorsOf(reimported), tensorsOf(imported))).toEqual([]);
      expect(await greedy(imported)).toEqual(await greedy(variant));
    }
  });

  it("converts dense matrices to another type on export (F32, BF16, Q8_0), values as that type rounds them", () => {
    for (const [type, ggml] of [["f32", GgmlType.F32], ["bf16", GgmlType.BF16], ["q8_0", GgmlType.Q8_0]] as const) {
      const gguf = join(scratch, `kjv-${type}.gguf`);
      exportGguf(MODEL, gguf, type);
      const file = GgufFile.open(gguf);
      expect(file.info("blk.3.ffn_down.weight").type).toBe(ggml);
      expect(file.info("token_embd.weight").type).toBe(ggml);
      file.close();
    }
    const imported = importGguf(join(scratch, "kjv-f32.gguf"), join(scratch, "kjv-f32"));
    expect(imported.types).toEqual({ F32: 57 });
    expect(differingTensors(tensorsOf(join(scratch, "kjv-f32")), tensorsOf(MODEL))).toEqual([]); // F16 → F32 is exact
  });

  it("keeps a quantized LM head quantized both ways: Q8_0 embeddings import as int8 blocks, run in MatMulNBits and export unchanged", async () => {
    for (const type of ["q8_0", "q4_0"] as const) {
      const gguf = join(scratch, `kjv-${type}-head.gguf`);
      exportGguf(MODEL, gguf, type);
      const file = GgufFile.open(gguf);
      // tied embeddings are the LM head: Q8_0 even in a Q4_0 file, as llama.cpp's quantizer keeps its output matrix
      expect([file.info("token_embd.weight").type, file.info("blk.0.attn_q.weight").type]).toEqual([GgmlType.Q8_0, type === "q8_0" ? GgmlType.Q8_0 : GgmlType.Q4_0]);
      const embdBlocks = file.readBytes("token_embd.weight");
      file.close();
      const imported = join(scratch, `kjv-${type}-head`);
      const report = importGguf(gguf, imported);
      expect([report.types, report.dequantized]).toEqual([{ Q8_0: type === "q8_0" ? 57 : 1, ...(type === "q4_0" ? { Q4_0: 56 } : {}) }, []]);
      const compression = readManifest(imported)!.compression as Record<string, unknown>;
      expect(compression).toMatchObject({ method: type === "q8_0" ? "int8+head-int8" : "int4+head-int8", block_size: 32, accuracy_level: type === "q8_0" ? 4 : 0 });
      expect((compression.matrices as Record<string, unknown>)["model.embed_tokens"]).toEqual({ bits: 8 });
      const model = ModelDirectory.open(imported);
      expect(model.has("model.embed_tokens.weight")).toBe(false);
      const head = await Head.load(model);
      // embedding rows are the Q8_0 blocks dequantized, bit for bit
      const table = dequantizeGgmlBlocks(GgmlType.Q8_0, embdBlocks, 2048 * 256);
      expect(Buffer.from(head.embed([7, 2047, 7]).buffer)).toEqual(Buffer.from(Float32Array.of(...table.subarray(7 * 256, 8 * 256), ...table.subarray(2047 * 256), ...table.subarray(7 * 256, 8 * 256)).buffer));
      // a row's logits are the same alone and in a batch (BatchingHead relies on it)
      const rows = head.embed([5, 6, 7]);
      const batch = await head.logits(rows);
      for (let i = 0; i < 3; i++) expect(Buffer.from((await head.logits(rows.subarray(i * 256, (i + 1) * 256))).buffer)).toEqual(Buffer.from(batch.slice(i * 2048, (i + 1) * 2048).buffer));
      await head.release();
      model.close();
      const again = join(scratch, `kjv-${type}-head-again.gguf`);
      exportGguf(imported, again);
      const [a, b] = [GgufFile.open(gguf), GgufFile.open(again)];
      expect([...b.tensors.values()].map((t) => [t.name, t.type])).toEqual([...a.tensors.values()].map((t) => [t.name, t.type]));
      expect([...a.tensors.keys()].filter((name) => !Buffer.from(a.readBytes(name)).equals(b.readBytes(name)))).toEqual([]);
      a.close();
      b.close();
    }
    // the 8-bit model generates what the dense one does on this prompt
    expect(await greedy(join(scratch, "kjv-q8_0-head"))).toEqual(await greedy(MODEL));
  });

  it("efed compress --head-bits quantizes the embeddings (the tied LM head): rows are the quantized table's, and export writes Q8_0", async () => {
    const dir = join(scratch, "kjv-int8-head8");
    await compressModel(MODEL, dir, { method: "int8", headBits: 8 });
    const compression = readManifest(dir)!.compression as Record<string, unknown>;
    expect(compression).toMatchObject({ method: "int8+head-int8", block_size: 32, accuracy_level: 4 });
    expect((compression.matrices as Record<string, unknown>)["model.embed_tokens"]).toEqual({ bits: 8 });
    const model = ModelDirectory.open(dir);
    const head = await Head.load(model);
    const dense = ModelDirectory.open(MODEL);
    const table = dequantize(quantize(dense.tensor("model.embed_tokens.weight", [2048, 256]), 2048, 256, 8, 32));
    dense.close();
    expect(Buffer.from(head.embed([3, 2047]).buffer)).toEqual(Buffer.from(Float32Array.of(...table.subarray(3 * 256, 4 * 256), ...table.subarray(2047 * 256)).buffer));
    await head.release();
    model.close();
    const file = join(scratch, "kjv-int8-head8.gguf");
    exportGguf(dir, file);
    const gguf = GgufFile.open(file);
    expect([gguf.info("token_embd.weight").type, gguf.info("blk.0.ffn_up.weight").type]).toEqual([GgmlType.Q8_0, GgmlType.Q8_0]);
    gguf.close();
    await expect(compressModel(MODEL, join(scratch, "x"), { method: "int4", headBits: 3 as 8 })).rejects.toThrow("--head-bits must be one of 4, 8, got 3");
    const cli = await runEfed("compress", "--model", MODEL, "--out", join(scratch, "x"), "--method", "int4", "--head-bits", "16");
    expect([cli.code, cli.stderr]).toEqual([1, expect.stringContaining('"16" is not a weight width: give 4 or 8.')]);
  });

  it("an untied model: embeddings and LM head are quantized apart (Q4_0 export: embeddings Q4_0, output Q8_0) and run as such", async () => {
    const odd = randomModel(scratch, "untied-80", { hidden_size: 64, vocab_size: 96 }); // intermediate 80: not whole blocks of 32
    expect(() => exportGguf(odd.dir, join(scratch, "odd.gguf"), "q4_0")).toThrow("model.layers.0.mlp.down_proj.weight has 80 columns; Q4_0 needs a multiple of 32 (export it as f16 or f32)");
    const dense = randomModel(scratch, "untied", { hidden_size: 64, intermediate_size: 96, vocab_size: 96 });
    expect(dense.config.tieWordEmbeddings).toBe(false);
    const H = 64;
    const hidden = Float32Array.from({ length: 3 * H }, (_, i) => Math.sin(i));
    const denseHead = await Head.load(dense);
    const reference = await denseHead.logits(hidden);
    await denseHead.release();
    const file = join(scratch, "untied-q4.gguf");
    exportGguf(dense.dir, file, "q4_0");
    const gguf = GgufFile.open(file);
    expect([gguf.info("token_embd.weight").type, gguf.info("output.weight").type]).toEqual([GgmlType.Q4_0, GgmlType.Q8_0]);
    const embdBlocks = gguf.readBytes("token_embd.weight");
    gguf.close();
    const imported = join(scratch, "untied-q4");
    importGguf(file, imported);
    expect((readManifest(imported)!.compression as { matrices: Record<string, unknown> }).matrices).toMatchObject({ "model.embed_tokens": { bits: 4 }, lm_head: { bits: 8 } });
    const model = ModelDirectory.open(imported);
    const head = await Head.load(model);
    const table = dequantizeGgmlBlocks(GgmlType.Q4_0, embdBlocks, 96 * H);
    expect(Buffer.from(head.embed([95, 4]).buffer)).toEqual(Buffer.from(Float32Array.of(...table.subarray(95 * H), ...table.subarray(4 * H, 5 * H)).buffer));
    const logits = await head.logits(hidden);
    // an 8-bit head with 8-bit activations: within 2% of the float head's largest logit, and alone = batched
    const scale = Math.max(...reference.map(Math.abs));
    expect(Math.max(...logits.map((v, i) => Math.abs(v - reference[i]!)))).toBeLessThan(0.02 * scale);
    expect(Buffer.from((await head.logits(hidden.subarray(H, 2 * H))).buffer)).toEqual(Buffer.from(logits.slice(96, 192).buffer));
    await head.release();
    model.close();
  });

  it("imports quantized layers at a chosen accuracy level (another variant), and refuses one for a model without quantized layers", async () => {
    const gguf = join(scratch, "kjv-q4_0-head.gguf"); // written by the test above
    const atFour = importGguf(gguf, join(scratch, "kjv-q4_0-level4"), { accuracyLevel: 4 });
    expect(readManifest(join(scratch, "kjv-q4_0-level4"))!.compression).toMatchObject({ method: "int4+head-int8", accuracy_level: 4 });
    expect(atFour.variantId).not.toBe(importGguf(gguf, join(scratch, "kjv-q4_0-level0")).variantId);
    expect(() => importGguf(join(scratch, "kjv-f32.gguf"), join(scratch, "kjv-f32-level4"), { accuracyLevel: 4 })).toThrow(
      "kjv-f32.gguf: --accuracy-level applies to quantized layers; this model's layers are not quantized",
    );
    const cli = await runEfed("convert", gguf, join(scratch, "x"), "--accuracy-level", "2");
    expect([cli.code, cli.stderr]).toEqual([1, expect.stringContaining('"2" is not an accuracy level: give 0 or 4.')]);
  });

  it("refuses what GGUF cannot hold, naming it: SVD factors, blocks other than 32, an existing quantization given another type", async () => {
    const svd = join(scratch, "svd");
    await compressModel(MODEL, svd, { method: "svd", rank: 16 });
    expect(() => exportGguf(svd, join(scratch, "svd.gguf"))).toThrow(/model\.layers\.0\.mlp\.down_proj is stored as SVD factors \(rank 16\), which GGUF cannot hold/);
    const blocks64 = join(scratch, "int8-b64");
    await compressModel(MODEL, blocks64, { method: "int8", blockSize: 64 });
    expect(() => exportGguf(blocks64, join(scratch, "b64.gguf"))).toThrow(/quantized with blocks of 64; GGUF's Q8_0\/Q4_0 need blocks of 32/);
    expect(() => exportGguf(blocks64, join(scratch, "b64.gguf"), "f16")).toThrow(/is already quantized \(int8\); export it with --type keep/);
  });
});

describe("GGUF blocks and layouts", () => {
  it("Q4_0's nibble order (j and j+16 share a byte) maps to MatMulNBits' (2i and 2i+1) and back", () => {
    const block = new Uint8Array(18);
    block.set([0x00, 0x3c]); // scale 1.0 in F16
    for (let j = 0; j < 16; j++) block[2 + j] = (j & 0x0f) | ((15 - j) << 4); // element j = j, element j+16 = 15−j
    const f = fromGgmlBlocks(GgmlType.Q4_0, block, 1, 32);
    expect(f.scales).toEqual(new Float32Array([1]));
    const codes = Array.from({ length: 32 }, (_, i) => (i & 1 ? f.packed[i >> 1]! >> 4 : f.packed[i >> 1]! & 0x0f));
    expect(codes).toEqual([...Array.from({ length: 16 }, (_, j) => j), ...Array.from({ length: 16 }, (_, j) => 15 - j)]);
    expect(toGgmlBlocks(f)).toEqual({ type: GgmlType.Q4_0, data: block, maxScaleRounding: 0 });
  });

  it("reorders a head's rotary rows from halves to pairs and back", () => {
    const rows = new Uint8Array([0, 1, 2, 3, 10, 11, 12, 13]); // 2 heads × 4 rows of 1 byte
    const gguf = reorderRotaryRows(rows, 8, 2, true);
    expect([...gguf]).toEqual([0, 2, 1, 3, 10, 12, 11, 13]);
    expect(reorderRotaryRows(gguf, 8, 2, false)).toEqual(rows);
  });
});

describe("a hostile or unsupported GGUF file", () => {
  const write = (name: string, bytes: Uint8Array): string => {
    const path = join(scratch, name);
    writeFileSync(path, bytes);
    return path;
  };
  const header = (tensorCount: bigint, metadataCount: bigint): Buffer => {
    const b = Buffer.alloc(24);
    b.write("GGUF", 0, "latin1");
    b.writeUInt32LE(3, 4);
    b.writeBigUInt64LE(tensorCount, 8);
    b.writeBigUInt64LE(metadataCount, 16);
    return b;
  };

  it("names a wrong magic, a truncated header and counts beyond the limits", () => {
    expect(() => GgufFile.open(write("magic.gguf", Buffer.from("GGML\x03\0\0\0")))).toThrow(/is not a GGUF file \(magic 0x4c4d4747, expected "GGUF"\)/);
    expect(() => GgufFile.open(write("short.gguf", header(1n, 0n).subarray(0, 12)))).toThrow(/the header is truncated/);
    expect(() => GgufFile.open(write("many.gguf", header(1n << 40n, 0n)))).toThrow(/the tensor count is 1099511627776, expected at most 65536/);
    const hugeString = Buffer.concat([header(0n, 1n), Buffer.from(new BigUint64Array([1n << 33n]).buffer)]);
    expect(() => GgufFile.open(write("string.gguf", hugeString))).toThrow(/the length of metadata key 0 is 8589934592, expected at most 16777216/);
  });

  it("names an unsupported tensor type and a tensor that ends past the file", () => {
    const metadata = new Map<string, GgufValue>([["general.architecture", { type: GgufValueType.STRING, value: "llama" }]]);
    const path = join(scratch, "ok.gguf");
    writeGguf(path, metadata, [{ name: "token_embd.weight", dims: [32, 2], type: GgmlType.Q8_0, data: new Uint8Array(68) }]);
    const bytes = readFileSync(path);
    expect(GgufFile.open(path).info("token_embd.weight")).toMatchObject({ dims: [32, 2], type: GgmlType.Q8_0, byteLength: 68 });
    const typeAt = bytes.indexOf(Buffer.from("token_embd.weight")) + "token_embd.weight".length + 4 + 16;
    const q6k = Buffer.from(bytes);
    q6k.writeUInt32LE(14, typeAt);
    expect(() => GgufFile.open(write("q6k.gguf", q6k))).toThrow(/tensor token_embd\.weight is Q6_K; eFed reads F32, F16, BF16, Q8_0 and Q4_0/);
    expect(() => GgufFile.open(write("cut.gguf", bytes.subarray(0, bytes.length - 60)))).toThrow(/tensor token_embd\.weight ends at byte \d+, past the end of the file/);
  });
});
