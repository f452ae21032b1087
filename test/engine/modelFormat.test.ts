import { readFileSync, writeFileSync, truncateSync, statSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ModelFormatError } from "../../engine/errors.js";
import { ropeInverseFrequencies, parseConfig } from "../../engine/model/config.js";
import { float32ToBF16Bytes, float32ToF16Bytes, toFloat32, widenInPlace } from "../../protocol/dtype.js";
import { keccak256 } from "ethers";
import { buildManifest, verifyTensors } from "../../engine/model/manifest.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { SafetensorsFile } from "../../engine/model/safetensors.js";
import { tinyConfig, writeRandomModel } from "../../engine/model/randomModel.js";
import { writeSafetensors } from "../../engine/model/safetensorsWriter.js";
import type { DenseFactor } from "../../engine/model/projection.js";
import { LayerBuffers, expectedTensors, loadLayerWeights } from "../../engine/model/weights.js";
import { Head } from "../../engine/runtime/head.js";
import { Shard } from "../../engine/runtime/shard.js";
import { scratchDir } from "./helpers.js";

const scratch = scratchDir();
afterAll(() => scratch.cleanup());
let counter = 0;

/** A fresh copy of a valid tiny model to break. */
function freshModel(overrides = {}): string {
  const dir = join(scratch.dir, `m${counter++}`);
  writeRandomModel(dir, tinyConfig(overrides), { seed: 3, dtype: "F32" });
  return dir;
}

function expectFormatError(fn: () => unknown, message: string | RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ModelFormatError);
  if (typeof message === "string") expect((caught as Error).message).toContain(message);
  else expect((caught as Error).message).toMatch(message);
}

describe("a broken model directory gets a clear error naming the file and tensor", () => {
  it("a missing directory and a missing config.json", () => {
    expectFormatError(() => ModelDirectory.open(join(scratch.dir, "nope")), "does not exist");
    const dir = freshModel();
    rmSync(join(dir, "config.json"));
    expectFormatError(() => ModelDirectory.open(dir), `cannot read ${join(dir, "config.json")}`);
  });

  it("no weights file", () => {
    const dir = freshModel();
    rmSync(join(dir, "model.safetensors"));
    expectFormatError(() => ModelDirectory.open(dir), "neither model.safetensors nor model.safetensors.index.json exists");
  });

  it("an unsupported model_type", () => {
    expectFormatError(
      () => parseConfig({ ...tinyConfig(), model_type: "gpt2" }, "cfg.json"),
      'cfg.json: unsupported model_type "gpt2" (supported: llama, mistral, qwen2)',
    );
  });

  it("bad config fields name the field and what was expected", () => {
    expectFormatError(() => parseConfig({ ...tinyConfig(), hidden_size: -4 }, "c.json"), "c.json: hidden_size is -4, expected a positive integer");
    expectFormatError(
      () => parseConfig({ ...tinyConfig(), num_key_value_heads: 3 }, "c.json"),
      "num_key_value_heads is 3, expected a divisor of num_attention_heads (4)",
    );
    expectFormatError(
      () => parseConfig({ ...tinyConfig(), rope_scaling: { rope_type: "yarn", factor: 4 } }, "c.json"),
      'unsupported rope_scaling type "yarn"',
    );
  });

  it("a missing tensor", () => {
    const dir = freshModel();
    const path = join(dir, "model.safetensors");
    const model = ModelDirectory.open(dir);
    const info = model.info("model.layers.1.mlp.up_proj.weight");
    model.close();
    // rename the tensor in the header (same length keeps offsets valid)
    const bytes = readFileSync(path);
    const renamed = Buffer.from(bytes.toString("latin1").replace("model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.weighx"), "latin1");
    writeFileSync(path, renamed);
    expect(info.shape).toEqual([80, 48]);
    const broken = ModelDirectory.open(dir);
    expectFormatError(() => broken.tensor("model.layers.1.mlp.up_proj.weight", [80, 48]), `${dir}: tensor model.layers.1.mlp.up_proj.weight is missing`);
  });

  it("a tensor of the wrong shape", () => {
    const dir = freshModel({ intermediate_size: 80 });
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...config, intermediate_size: 96 }));
    const model = ModelDirectory.open(dir);
    expectFormatError(
      () => model.tensor("model.layers.0.mlp.gate_proj.weight", [96, 48]),
      "tensor model.layers.0.mlp.gate_proj.weight has shape [80, 48], expected [96, 48]",
    );
  });

  it("a truncated file and a corrupt header", () => {
    const dir = freshModel();
    const path = join(dir, "model.safetensors");
    truncateSync(path, statSync(path).size - 100);
    expectFormatError(() => ModelDirectory.open(dir), /tensor \S+ is truncated: its data ends at byte \d+ of a \d+-byte data section/);
    writeFileSync(path, Buffer.from([1, 2, 3]));
    expectFormatError(() => ModelDirectory.open(dir), "shorter than the 8-byte length prefix");
    const huge = Buffer.alloc(16);
    huge.writeBigUInt64LE(1n << 40n);
    writeFileSync(path, huge);
    expectFormatError(() => ModelDirectory.open(dir), "declared header length 1099511627776 exceeds the file");
    const notJson = Buffer.concat([Buffer.alloc(8), Buffer.from("{not json")]);
    notJson.writeBigUInt64LE(9n);
    writeFileSync(path, notJson);
    expectFormatError(() => ModelDirectory.open(dir), "header is not JSON");
  });

  it("an unknown and an unsupported dtype", () => {
    const dir = freshModel();
    const mpath = join(dir, "model.safetensors");
    const mtext = readFileSync(mpath).toString("latin1");
    writeFileSync(mpath, Buffer.from(mtext.replace('"dtype":"F32"', '"dtype":"X32"'), "latin1"));
    expectFormatError(() => ModelDirectory.open(dir), "has unknown dtype X32");
    const dir2 = freshModel();
    const p2 = join(dir2, "model.safetensors");
    const t2 = readFileSync(p2).toString("latin1");
    // I32 has the same width as F32: the header is valid, but the engine cannot compute with it
    writeFileSync(p2, Buffer.from(t2.replace('"dtype":"F32"', '"dtype":"I32"'), "latin1"));
    const model = ModelDirectory.open(dir2);
    expectFormatError(() => model.tensor("model.embed_tokens.weight", [97, 48]), "has unsupported dtype I32 (expected F32, F16 or BF16)");
  });

  it("a sharded checkpoint loads through its index", async () => {
    const dir = freshModel();
    const model = ModelDirectory.open(dir);
    const names = [...expectedTensors(model.config).keys()];
    const half = Math.floor(names.length / 2);
    const parts = [names.slice(0, half), names.slice(half)];
    const weightMap: Record<string, string> = {};
    parts.forEach((part, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(
        join(dir, file),
        new Map(part.map((n) => [n, { dtype: "F32" as const, shape: model.info(n).shape, data: new Uint8Array(model.tensor(n, model.info(n).shape).buffer) }])),
      );
      for (const n of part) weightMap[n] = file;
    });
    const original = model.tensor("model.norm.weight", [48]);
    model.close();
    rmSync(join(dir, "model.safetensors"));
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const sharded = ModelDirectory.open(dir);
    expect(sharded.tensor("model.norm.weight", [48])).toEqual(original);
    const shard = await Shard.load(sharded, 1, 3);
    expect([shard.first, shard.last]).toEqual([1, 3]);
  });

  it("reads lazily: a shard needs only its own layers' files, the client only the head's", async () => {
    const dir = freshModel();
    const model = ModelDirectory.open(dir);
    const fileOf = (name: string): string => {
      const m = /^model\.layers\.(\d+)\./.exec(name);
      return m === null ? "head.safetensors" : `layer-${m[1]}.safetensors`;
    };
    const groups = new Map<string, string[]>();
    for (const name of model.tensorNames()) groups.set(fileOf(name), [...(groups.get(fileOf(name)) ?? []), name]);
    const weightMap: Record<string, string> = {};
    for (const [file, names] of groups) {
      writeSafetensors(
        join(dir, file),
        new Map(names.map((n) => [n, { dtype: "F32" as const, shape: model.info(n).shape, data: model.rawBytes(n) }])),
      );
      for (const n of names) weightMap[n] = file;
    }
    model.close();
    rmSync(join(dir, "model.safetensors"));
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: weightMap }));
    rmSync(join(dir, "layer-0.safetensors"));
    rmSync(join(dir, "layer-3.safetensors"));
    const lazy = ModelDirectory.open(dir);
    const shard = await Shard.load(lazy, 1, 3);
    expect([shard.first, shard.last]).toEqual([1, 3]);
    expect((await Head.load(lazy)).embed([5]).length).toBe(48);
    await expect(Shard.load(lazy, 0, 2)).rejects.toThrow(`cannot open ${join(dir, "layer-0.safetensors")}`);
  });

  it("a shard refuses an empty or out-of-model layer range", async () => {
    const model = ModelDirectory.open(freshModel());
    await expect(Shard.load(model, 2, 2)).rejects.toThrow("layer range 2:2 is not within 0:4 or is empty");
    await expect(Shard.load(model, 0, 5)).rejects.toThrow("layer range 0:5 is not within 0:4 or is empty");
  });
});

describe("reading tensors into float32", () => {
  it("F16 and BF16 widen in place from the upper half of one buffer, as toFloat32 decodes them", () => {
    const values = new Float32Array([0, -0, 1, -2.5, 65504, 2 ** -24, 0.333251953125, Infinity]);
    for (const [dtype, encode] of [["F16", float32ToF16Bytes], ["BF16", float32ToBF16Bytes]] as const) {
      const bytes = encode(values);
      const buffer = new Float32Array(values.length);
      new Uint8Array(buffer.buffer, 2 * values.length).set(bytes);
      expect(widenInPlace(buffer, dtype)).toBe(buffer);
      expect(buffer, dtype).toEqual(toFloat32(bytes, dtype));
    }
  });

  it("a tensor is read into a given buffer of its size, and a buffer of another size is refused", () => {
    for (const dtype of ["F32", "F16", "BF16"] as const) {
      const dir = join(scratch.dir, `into-${dtype}`);
      writeRandomModel(dir, tinyConfig(), { seed: 5, dtype });
      const model = ModelDirectory.open(dir);
      const name = "model.layers.1.mlp.up_proj.weight";
      const shape = [80, 48];
      const fresh = model.tensor(name, shape);
      const buffer = new Float32Array(80 * 48).fill(7);
      expect(model.tensor(name, shape, buffer)).toBe(buffer);
      expect(buffer, dtype).toEqual(fresh);
      expect(() => model.tensor(name, shape, new Float32Array(80 * 48 - 1))).toThrow(`${join(dir, "model.safetensors")}: tensor ${name} has 3840 elements, the buffer given for it 3839`);
      model.close();
    }
  });

  it("a tensor larger than a hashing chunk hashes as its bytes do, and a flipped byte past the first chunk is caught", () => {
    const dir = join(scratch.dir, "big-embedding");
    writeRandomModel(dir, tinyConfig({ vocab_size: 50_000 }), { seed: 9, dtype: "F32" }); // embedding: 9.6 MB, two 8 MiB chunks
    const name = "model.embed_tokens.weight";
    let model = ModelDirectory.open(dir);
    const manifest = buildManifest(model);
    expect(manifest.tensors[name]!.keccak256).toBe(keccak256(model.rawBytes(name)));
    verifyTensors(model, manifest, [name]);
    expect(() => model.rawBytesInto(name, 9_600_000 - 3, new Uint8Array(4))).toThrow(`tensor ${name}'s 9600000`);
    model.close();
    const file = join(dir, "model.safetensors");
    const st = SafetensorsFile.open(file);
    const offset = st.info(name).offset;
    st.close();
    const bytes = readFileSync(file);
    bytes[offset + 9_000_000] = bytes[offset + 9_000_000]! ^ 1;
    writeFileSync(file, bytes);
    model = ModelDirectory.open(dir);
    expectFormatError(() => verifyTensors(model, manifest, [name]), `tensor ${name} hashes to`);
    model.close();
  });

  it("layers loaded into LayerBuffers reuse one layer's arrays and read each layer's own weights", () => {
    const model = ModelDirectory.open(freshModel());
    const buffers = new LayerBuffers();
    const first = loadLayerWeights(model, 0, buffers);
    const firstUp = (first.up.factors[0] as DenseFactor).data;
    const firstUpValues = Float32Array.from(firstUp);
    const second = loadLayerWeights(model, 1, buffers);
    expect((second.up.factors[0] as DenseFactor).data).toBe(firstUp); // the same array, overwritten
    expect((second.up.factors[0] as DenseFactor).data).toEqual((loadLayerWeights(model, 1).up.factors[0] as DenseFactor).data);
    expect(firstUp).not.toEqual(firstUpValues);
    expect((second.q.factors[0] as DenseFactor).data).not.toBe((second.o.factors[0] as DenseFactor).data); // same shape, own slot
    buffers.release(); // freed at once: the arrays read as empty, and the next layer gets new ones
    expect(firstUp.length).toBe(0);
    const third = loadLayerWeights(model, 2, buffers);
    expect((third.up.factors[0] as DenseFactor).data).toEqual((loadLayerWeights(model, 2).up.factors[0] as DenseFactor).data);
    model.close();
  });
});

describe("dtypes and RoPE frequencies", () => {
  it("F16 and BF16 round-trip exactly representable values and round others to nearest even", () => {
    const exact = new Float32Array([0, -0, 1, -2.5, 65504, 2 ** -24, 0.333251953125]);
    expect(toFloat32(float32ToF16Bytes(exact), "F16")).toEqual(exact);
    expect(toFloat32(float32ToF16Bytes(new Float32Array([1 + 2 ** -11])), "F16")[0]).toBe(1); // tie → even
    expect(toFloat32(float32ToF16Bytes(new Float32Array([1e6])), "F16")[0]).toBe(Infinity);
    const bf = new Float32Array([1, -3.140625, 2 ** 100]);
    expect(toFloat32(float32ToBF16Bytes(bf), "BF16")).toEqual(bf);
    expect(toFloat32(float32ToBF16Bytes(new Float32Array([1 + 2 ** -8])), "BF16")[0]).toBe(1);
  });

  it("Llama 3 scaling keeps short wavelengths, divides long ones, blends between", () => {
    const c = parseConfig(
      tinyConfig({
        hidden_size: 64,
        num_attention_heads: 1,
        num_key_value_heads: 1,
        rope_theta: 500000,
        rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
      }),
      "c.json",
    );
    const plain = ropeInverseFrequencies({ ...c, ropeScaling: undefined });
    const scaled = ropeInverseFrequencies(c);
    // wavelength 2π/inv: below 8192/4 = 2048 kept, above 8192 divided by 8
    for (let i = 0; i < plain.length; i++) {
      const wavelen = (2 * Math.PI) / plain[i]!;
      if (wavelen < 2048) expect(scaled[i]).toBe(plain[i]);
      else if (wavelen > 8192) expect(scaled[i]).toBeCloseTo(plain[i]! / 8, 15);
      else expect(scaled[i]! < plain[i]! && scaled[i]! > plain[i]! / 8).toBe(true);
    }
    expect(plain[1]).toBeCloseTo(500000 ** (-2 / 64), 15);
  });
});
