import { createRequire } from "node:module";
import type { onnx as OnnxTypes } from "onnx-proto";
import { EXTERNAL_MIN_BYTES, type ExternalDataFile, type ExternalLocation } from "./externalData.js";

// onnx-proto is CommonJS; load it through require so ESM interop cannot reshape its namespace.
const require = createRequire(import.meta.url);
const { onnx } = require("onnx-proto") as { onnx: typeof OnnxTypes };

export const ElemType = { FLOAT: 1, UINT8: 2, INT32: 6, INT64: 7, DOUBLE: 11 } as const;
export type ElemType = (typeof ElemType)[keyof typeof ElemType];

/** A dimension: a fixed size, or a name for a size chosen at run time. */
export type Dim = number | string;
export type AttrValue = number | number[] | string | { float: number };

const ATTR = { FLOAT: 1, INT: 2, STRING: 3, INTS: 7 } as const;
const DATA_LOCATION_EXTERNAL = 1; // TensorProto.DataLocation.EXTERNAL

/**
 * A small builder for ONNX graphs: named values, initializers and nodes, serialized with
 * onnx-proto. Node outputs get unique names from a prefix, so graph-building code reads like the
 * math it implements: `const y = g.op("MatMul", [x, w])`.
 *
 * With an `ExternalDataFile`, every initializer of EXTERNAL_MIN_BYTES or more is written to that
 * file when it is added and the graph keeps only its location (ONNX external data), so the caller's
 * array can be dropped at once: weights then exist once, in the file, until ONNX Runtime loads it.
 *
 * `serialize` lists the nodes that read the largest constants first (see `prepackOrder`), so a
 * serialized graph is not in ONNX's topological order: ONNX Runtime sorts nodes itself, and these
 * graphs are only ever loaded by it.
 */
export class GraphBuilder {
  private readonly nodes: OnnxTypes.INodeProto[] = [];
  private readonly initializers: OnnxTypes.ITensorProto[] = [];
  /** Byte size of each constant, by name. */
  private readonly constantBytes = new Map<string, number>();
  private readonly inputs: OnnxTypes.IValueInfoProto[] = [];
  private readonly outputs: OnnxTypes.IValueInfoProto[] = [];
  private readonly names = new Set<string>();
  private counter = 0;
  /** Node outputs renamed to the graph output they became (`output`): later uses of the old name mean the new one. */
  private readonly renamed = new Map<string, string>();
  private readonly external: ExternalDataFile | undefined;

  constructor(external?: ExternalDataFile) {
    this.external = external;
  }

  input(name: string, type: ElemType, shape: readonly Dim[]): string {
    this.claim(name);
    this.inputs.push(valueInfo(name, type, shape));
    return name;
  }

  /**
   * Marks `value` as the graph output `name`. A value a node computes is renamed: the node writes the
   * output itself (an Identity would copy it on every run, and a KV cache grows with the context).
   * A graph input, a constant or a value that is already an output goes through an Identity.
   */
  output(value: string, name: string, type: ElemType, shape: readonly Dim[]): void {
    const current = this.renamed.get(value) ?? value;
    if (current !== name) {
      this.claim(name);
      const producer = this.nodes.find((n) => n.output!.includes(current));
      if (producer !== undefined && !this.outputs.some((o) => o.name === current)) {
        producer.output = producer.output!.map((o) => (o === current ? name : o));
        for (const n of this.nodes) n.input = n.input!.map((i) => (i === current ? name : i));
        this.renamed.set(value, name);
      } else {
        this.nodes.push({ opType: "Identity", input: [current], output: [name], name: `${name}_identity` });
      }
    }
    this.outputs.push(valueInfo(name, type, shape));
  }

  /** A float32 constant; `data` is referenced, not copied, until `serialize()` (or written out now: see the class). */
  floatInit(name: string, dims: readonly number[], data: Float32Array): string {
    return this.init(name, ElemType.FLOAT, dims, bytesOf(data));
  }

  /**
   * A float32 constant of shape `dims` that `fill` writes piecewise: `write(at, values)` puts
   * `values` at element `at` of the row-major data. With a data file the pieces go straight to it,
   * so a large constant (the LM head's transpose) never exists whole in memory.
   */
  floatInitFilled(name: string, dims: readonly number[], fill: (write: (at: number, values: Float32Array) => void) => void): string {
    this.claim(name);
    const count = dims.reduce((a, d) => a * d, 1);
    this.constantBytes.set(name, 4 * count);
    if (this.external !== undefined && 4 * count >= EXTERNAL_MIN_BYTES) {
      const external = this.external;
      const where = external.reserve(4 * count);
      fill((at, values) => external.writeAt(where, 4 * at, bytesOf(values)));
      this.initializers.push({ name, dataType: ElemType.FLOAT, dims: [...dims], dataLocation: DATA_LOCATION_EXTERNAL, externalData: externalEntries(where) });
      return name;
    }
    const data = new Float32Array(count);
    fill((at, values) => data.set(values, at));
    this.initializers.push({ name, dataType: ElemType.FLOAT, dims: [...dims], rawData: bytesOf(data) });
    return name;
  }

  /** A uint8 constant (packed quantized weights); `data` is referenced, not copied. */
  uint8Init(name: string, dims: readonly number[], data: Uint8Array): string {
    return this.init(name, ElemType.UINT8, dims, data);
  }

  int64Init(name: string, values: readonly number[]): string {
    this.claim(name);
    const data = new BigInt64Array(values.map((v) => BigInt(v)));
    this.constantBytes.set(name, data.byteLength);
    this.initializers.push({ name, dataType: ElemType.INT64, dims: [values.length], rawData: new Uint8Array(data.buffer) });
    return name;
  }

  /** Adds a node and returns its (single) output name. */
  op(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, domain = ""): string {
    const [out] = this.opN(opType, inputs, 1, attrs, domain);
    return out!;
  }

  /** Adds a node with `count` outputs. */
  opN(opType: string, inputs: readonly string[], count: number, attrs: Record<string, AttrValue> = {}, domain = ""): string[] {
    const id = this.counter++;
    const outputs = Array.from({ length: count }, (_, i) => `${opType.toLowerCase()}_${id}${count > 1 ? `_${i}` : ""}`);
    this.nodes.push({
      opType,
      domain,
      name: `${opType}_${id}`,
      input: inputs.map((i) => this.renamed.get(i) ?? i),
      output: outputs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outputs;
  }

  /** Whether any node so far comes from operator domain `domain` (e.g. "com.microsoft"). */
  usesDomain(domain: string): boolean {
    return this.nodes.some((n) => n.domain === domain);
  }

  serialize(graphName: string, opsets: Record<string, number> = { "": 17 }): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: "efed",
      opsetImport: Object.entries(opsets).map(([domain, version]) => ({ domain, version })),
      graph: {
        name: graphName,
        node: this.prepackOrder(),
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }

  /**
   * The nodes in the order ONNX Runtime should prepack their weights: those reading a large constant
   * first, the largest first, then the rest in the order they were built. ONNX Runtime prepacks
   * (repacks a MatMul's weight for its kernels) node by node in file order and frees each original
   * as soon as its packed copy exists, so loading peaks at all packed weights plus the one original
   * being packed last: in build order that is the last layer's 44 MiB MLP matrix (TinyLlama), in
   * this order one of the smallest. Nodes still run in data order (ONNX Runtime sorts them
   * topologically itself), with the same results bit for bit.
   */
  private prepackOrder(): OnnxTypes.INodeProto[] {
    const largestConstant = (node: OnnxTypes.INodeProto): number => Math.max(0, ...node.input!.map((i) => this.constantBytes.get(i) ?? 0));
    const sized = this.nodes.map((node) => ({ node, bytes: largestConstant(node) }));
    const heavy = sized.filter((n) => n.bytes >= EXTERNAL_MIN_BYTES).sort((a, b) => b.bytes - a.bytes);
    return [...heavy, ...sized.filter((n) => n.bytes < EXTERNAL_MIN_BYTES)].map((n) => n.node);
  }

  private init(name: string, dataType: ElemType, dims: readonly number[], rawData: Uint8Array): string {
    this.claim(name);
    const byteLength = dims.reduce((a, d) => a * d, 1) * (dataType === ElemType.FLOAT ? 4 : 1);
    if (rawData.byteLength !== byteLength) {
      throw new Error(`initializer ${name} has ${rawData.byteLength} bytes, its shape [${dims.join(", ")}] needs ${byteLength}`);
    }
    this.constantBytes.set(name, byteLength);
    if (this.external !== undefined && byteLength >= EXTERNAL_MIN_BYTES) {
      const where = this.external.append(rawData);
      this.initializers.push({ name, dataType, dims: [...dims], dataLocation: DATA_LOCATION_EXTERNAL, externalData: externalEntries(where) });
      return name;
    }
    this.initializers.push({ name, dataType, dims: [...dims], rawData });
    return name;
  }

  private claim(name: string): void {
    if (this.names.has(name)) throw new Error(`graph value ${name} is defined twice`);
    this.names.add(name);
  }
}

function bytesOf(data: Float32Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function externalEntries(where: ExternalLocation): OnnxTypes.IStringStringEntryProto[] {
  return [
    { key: "location", value: where.location },
    { key: "offset", value: String(where.offset) },
    { key: "length", value: String(where.length) },
  ];
}

function valueInfo(name: string, elemType: ElemType, shape: readonly Dim[]): OnnxTypes.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: shape.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, v: AttrValue): OnnxTypes.IAttributeProto {
  if (typeof v === "number") return { name, type: ATTR.INT, i: v };
  if (typeof v === "string") return { name, type: ATTR.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: ATTR.INTS, ints: v };
  return { name, type: ATTR.FLOAT, f: v.float };
}
