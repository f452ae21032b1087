import { createRequire } from "node:module";
import type { onnx as OnnxTypes } from "onnx-proto";
import { describe, expect, it } from "vitest";
import { ElemType, GraphBuilder } from "../../engine/onnx/graphBuilder.js";
import { createSession, ort } from "../../engine/runtime/session.js";

const { onnx } = createRequire(import.meta.url)("onnx-proto") as { onnx: typeof OnnxTypes };

describe("GraphBuilder outputs", () => {
  it("a computed value becomes the output itself (no Identity copy), later uses of its old name read it; inputs and repeated outputs go through an Identity", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", ElemType.FLOAT, [2]);
    const squared = g.op("Mul", [x, x]);
    g.output(squared, "squared", ElemType.FLOAT, [2]);
    g.output(g.op("Add", [squared, x]), "sum", ElemType.FLOAT, [2]); // `squared` was renamed by now
    g.output(x, "x_again", ElemType.FLOAT, [2]);
    g.output(squared, "squared_again", ElemType.FLOAT, [2]);
    const bytes = g.serialize("outputs");

    const graph = onnx.ModelProto.decode(bytes).graph!;
    expect(graph.node!.map((n) => [n.opType, [...n.input!], [...n.output!]])).toEqual([
      ["Mul", ["x", "x"], ["squared"]],
      ["Add", ["squared", "x"], ["sum"]],
      ["Identity", ["x"], ["x_again"]],
      ["Identity", ["squared"], ["squared_again"]],
    ]);

    const session = await createSession(bytes);
    try {
      const out = await session.run({ x: new ort.Tensor("float32", Float32Array.of(1.5, -2), [2]) });
      expect(Object.fromEntries(Object.entries(out).map(([k, t]) => [k, [...(t.data as Float32Array)]]))).toEqual({
        squared: [2.25, 4],
        sum: [3.75, 2],
        x_again: [1.5, -2],
        squared_again: [2.25, 4],
      });
    } finally {
      await session.release();
    }
  });
});

describe("GraphBuilder node order", () => {
  it("lists the nodes reading the largest constants first (ONNX Runtime's prepack order), and ONNX Runtime still runs them in data order", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", ElemType.FLOAT, [1, 16]);
    // small integers: every product and sum below is exact in float32
    const ramp = (n: number, mod: number): Float32Array => Float32Array.from({ length: n }, (_, i) => (i % mod) - 2);
    const a = g.floatInit("a", [16, 32], ramp(16 * 32, 5)); // 2 KiB
    const b = g.floatInit("b", [32, 64], ramp(32 * 64, 3)); // 8 KiB
    const bias = g.floatInit("bias", [64], ramp(64, 7)); // 256 B: under EXTERNAL_MIN_BYTES, stays in place
    const h = g.op("MatMul", [x, a]);
    const y = g.op("MatMul", [h, b]);
    g.output(g.op("Add", [y, bias]), "z", ElemType.FLOAT, [1, 64]);
    const bytes = g.serialize("order");

    const graph = onnx.ModelProto.decode(bytes).graph!;
    expect(graph.node!.map((n) => [n.opType, [...n.input!]])).toEqual([
      ["MatMul", [h, "b"]],
      ["MatMul", ["x", "a"]],
      ["Add", [y, "bias"]],
    ]);

    const xs = ramp(16, 4);
    const expected = new Float32Array(64);
    for (let j = 0; j < 64; j++) {
      let sum = 0;
      for (let k = 0; k < 32; k++) {
        let hk = 0;
        for (let i = 0; i < 16; i++) hk += xs[i]! * ramp(16 * 32, 5)[i * 32 + k]!;
        sum += hk * ramp(32 * 64, 3)[k * 64 + j]!;
      }
      expected[j] = sum + ramp(64, 7)[j]!;
    }
    const session = await createSession(bytes);
    try {
      const out = await session.run({ x: new ort.Tensor("float32", xs, [1, 16]) });
      expect([...(out.z!.data as Float32Array)]).toEqual([...expected]);
    } finally {
      await session.release();
    }
  });
});
