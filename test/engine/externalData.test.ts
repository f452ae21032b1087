import { lstatSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";
import type { onnx as OnnxTypes } from "onnx-proto";
import { afterAll, describe, expect, it } from "vitest";
import { loadHeadWeights, loadLayerWeights } from "../../engine/model/weights.js";
import { EXTERNAL_ALIGN_BYTES, ExternalDataFile } from "../../engine/onnx/externalData.js";
import { HeadIO, buildHeadGraph } from "../../engine/onnx/headGraph.js";
import { ShardIO, buildShardGraph } from "../../engine/onnx/shardGraph.js";
import { createFileSession, createSession, ort } from "../../engine/runtime/session.js";
import { bitsEqual, randomModel, scratchDir } from "./helpers.js";

const require = createRequire(import.meta.url);
const { onnx } = require("onnx-proto") as { onnx: typeof OnnxTypes };

const scratch = scratchDir();
afterAll(() => scratch.cleanup());

/** Deterministic, not all-equal inputs (so a swapped or zeroed weight shows). */
function ramp(n: number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + 1) * scale);
}

describe("graphs with their weights in an external data file", () => {
  it("a shard graph gives the same bits from a data file as from an in-memory protobuf (ops and fused attention)", async () => {
    const model = randomModel(scratch.dir, "shard", { hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2 });
    const c = model.config;
    const T = 5;
    for (const attention of ["ops", "gqa"] as const) {
      const load = (l: number) => loadLayerWeights(model, l);
      const inMemory = await createSession(buildShardGraph(c, 0, c.numLayers, load, { attention }));
      let graph: Uint8Array = new Uint8Array(0);
      const { session: fromFile, scratch: dir } = await createFileSession(
        (externalData) => (graph = buildShardGraph(c, 0, c.numLayers, load, { attention, externalData })),
      );
      // The weights really are in the data file: the protobuf holds none of the projections.
      const proto = onnx.ModelProto.decode(graph);
      const q = proto.graph!.initializer!.find((t) => t.name === "l0.q.w")!;
      expect(q.dataLocation).toBe(onnx.TensorProto.DataLocation.EXTERNAL);
      expect(q.rawData?.length ?? 0).toBe(0);

      const feeds: Record<string, ort.Tensor> = { [ShardIO.hidden]: new ort.Tensor("float32", ramp(T * c.hiddenSize, 0.8), [T, c.hiddenSize]) };
      if (attention === "gqa") {
        feeds[ShardIO.seqlensK] = new ort.Tensor("int32", Int32Array.of(T - 1), [1]);
        feeds[ShardIO.totalLength] = new ort.Tensor("int32", Int32Array.of(T), []);
        feeds[ShardIO.batchShape] = new ort.Tensor("int64", BigInt64Array.of(1n, BigInt(T), -1n), [3]);
      } else {
        const D = c.headDim;
        feeds[ShardIO.cos] = new ort.Tensor("float32", ramp(T * D, 1), [T, D]);
        feeds[ShardIO.sin] = new ort.Tensor("float32", ramp(T * D, 0.5), [T, D]);
        feeds[ShardIO.mask] = new ort.Tensor("float32", new Float32Array(T * T), [T, T]);
      }
      const empty = attention === "gqa" ? [1, c.numKvHeads, 0, c.headDim] : [c.numKvHeads, 0, c.headDim];
      for (let l = 0; l < c.numLayers; l++) {
        feeds[ShardIO.pastKey(l)] = new ort.Tensor("float32", new Float32Array(0), empty);
        feeds[ShardIO.pastValue(l)] = new ort.Tensor("float32", new Float32Array(0), empty);
      }
      const a = await inMemory.run(feeds);
      const b = await fromFile.run(feeds);
      for (const name of [ShardIO.hiddenOut, ShardIO.presentKey(c.numLayers - 1), ShardIO.presentValue(0)]) {
        expect(bitsEqual(a[name]!.data as Float32Array, b[name]!.data as Float32Array), `${attention} ${name}`).toBe(true);
      }
      await inMemory.release();
      await fromFile.release();
      dir.remove();
    }
  });

  it("the head graph gives the same logits bits from a data file, its LM head transposed block by block", async () => {
    // vocab 5000 > one transpose block (4096 rows), so the last block is partial
    const model = randomModel(scratch.dir, "head", { vocab_size: 5000 });
    const c = model.config;
    const w = loadHeadWeights(model);
    const rows = (first: number, count: number) => w.lmHead.slice(first * c.hiddenSize, (first + count) * c.hiddenSize);
    const inMemory = await createSession(buildHeadGraph(c, w.finalNorm, rows));
    const { session: fromFile, scratch: dir } = await createFileSession((data) => buildHeadGraph(c, w.finalNorm, rows, data));
    const T = 3;
    const feeds = { [HeadIO.hidden]: new ort.Tensor("float32", ramp(T * c.hiddenSize, 2), [T, c.hiddenSize]) };
    const a = (await inMemory.run(feeds))[HeadIO.logits]!.data as Float32Array;
    const b = (await fromFile.run(feeds))[HeadIO.logits]!.data as Float32Array;
    expect(a.length).toBe(T * c.vocabSize);
    expect(bitsEqual(a, b)).toBe(true);
    // and both are the plain product with the untransposed head (row 4999: in the partial block)
    const normed = new Float32Array(c.hiddenSize); // recomputed in float64 for a tolerance check only
    const x = ramp(T * c.hiddenSize, 2).subarray(0, c.hiddenSize);
    const rms = Math.sqrt(x.reduce((s, v) => s + v * v, 0) / c.hiddenSize + c.rmsNormEps);
    x.forEach((v, i) => (normed[i] = (v / rms) * w.finalNorm[i]!));
    const v = 4999;
    const expected = normed.reduce((s, n, i) => s + n * w.lmHead[v * c.hiddenSize + i]!, 0);
    expect(Math.abs(a[v]! - expected)).toBeLessThan(1e-3);
    await inMemory.release();
    await fromFile.release();
    dir.remove();
  });
});

describe("ExternalDataFile", () => {
  it("places every tensor on a page boundary, back to back, at the offsets it reports", () => {
    const path = join(scratch.dir, "data.bin");
    const file = new ExternalDataFile(path);
    const a = file.append(Uint8Array.of(1, 2, 3));
    const b = file.append(new Uint8Array(5000).fill(9));
    const c = file.reserve(4);
    file.writeAt(c, 2, Uint8Array.of(7, 8));
    file.writeAt(c, 0, Uint8Array.of(5, 6));
    file.close();
    expect(a).toEqual({ location: "data.bin", offset: 0, length: 3 });
    expect(b).toEqual({ location: "data.bin", offset: EXTERNAL_ALIGN_BYTES, length: 5000 });
    expect(c).toEqual({ location: "data.bin", offset: 3 * EXTERNAL_ALIGN_BYTES, length: 4 });
    const bytes = readFileSync(path);
    expect(bytes.length).toBe(3 * EXTERNAL_ALIGN_BYTES + 4);
    expect([...bytes.subarray(0, 4)]).toEqual([1, 2, 3, 0]);
    expect(bytes.subarray(EXTERNAL_ALIGN_BYTES, EXTERNAL_ALIGN_BYTES + 5000).every((x) => x === 9)).toBe(true);
    expect([...bytes.subarray(3 * EXTERNAL_ALIGN_BYTES)]).toEqual([5, 6, 7, 8]);
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it("refuses an existing file, a write past a tensor's end and a write after close", () => {
    const path = join(scratch.dir, "taken.bin");
    writeFileSync(path, "x");
    expect(() => new ExternalDataFile(path)).toThrow(/cannot create the graph data file .*taken\.bin/);
    const file = new ExternalDataFile(join(scratch.dir, "small.bin"));
    const where = file.reserve(4);
    expect(() => file.writeAt(where, 2, Uint8Array.of(1, 2, 3))).toThrow("write of 3 bytes at 2 overruns a 4-byte tensor");
    file.close();
    expect(() => file.append(Uint8Array.of(1))).toThrow("is already closed");
    expect(lstatSync(join(scratch.dir, "small.bin")).size).toBe(0);
    expect(readFileSync(path, "utf8")).toBe("x"); // not truncated by the refused open
  });
});
