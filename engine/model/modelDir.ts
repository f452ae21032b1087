import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ModelFormatError } from "../errors.js";
import { FactorNames, NO_COMPRESSION, parseCompression, type CompressionSpec } from "./compression.js";
import { parseConfig, type ModelConfig } from "./config.js";
import { MANIFEST_FILE, readManifest } from "./manifest.js";
import { SafetensorsFile, type TensorInfo } from "./safetensors.js";
import { QuantizedRows, TensorRows, type MatrixRows } from "./tensorRows.js";
import type { TensorSource } from "./tensorSource.js";

const SINGLE_FILE = "model.safetensors";
const INDEX_FILE = "model.safetensors.index.json";

/**
 * A Hugging Face model directory: `config.json` plus `model.safetensors` or a sharded
 * `model.safetensors.index.json`. Tensors are read on demand, so opening is cheap and a server
 * reads only what it serves.
 */
export class ModelDirectory implements TensorSource {
  readonly dir: string;
  readonly config: ModelConfig;
  /** How the layers' projections are stored, from the directory's manifest (dense without one). */
  readonly compression: CompressionSpec;
  private readonly files = new Map<string, SafetensorsFile>();
  /** tensor name → file name within `dir` */
  private readonly weightMap: Map<string, string>;

  private constructor(dir: string, config: ModelConfig, weightMap: Map<string, string>) {
    this.dir = dir;
    this.config = config;
    this.weightMap = weightMap;
    const manifest = readManifest(dir);
    this.compression = manifest === undefined ? NO_COMPRESSION : parseCompression(manifest.compression, join(dir, MANIFEST_FILE));
  }

  static open(dir: string): ModelDirectory {
    if (!existsSync(dir)) throw new ModelFormatError(`model directory ${dir} does not exist`, { dir });
    const configPath = join(dir, "config.json");
    const config = parseConfig(readJson(configPath), configPath);
    let weightMap: Map<string, string>;
    const indexPath = join(dir, INDEX_FILE);
    if (existsSync(join(dir, SINGLE_FILE))) {
      const file = SafetensorsFile.open(join(dir, SINGLE_FILE));
      weightMap = new Map([...file.tensors.keys()].map((name) => [name, SINGLE_FILE]));
      const md = new ModelDirectory(dir, config, weightMap);
      md.files.set(SINGLE_FILE, file);
      return md;
    }
    if (existsSync(indexPath)) {
      const index = readJson(indexPath) as { weight_map?: unknown };
      if (typeof index.weight_map !== "object" || index.weight_map === null) {
        throw new ModelFormatError(`${indexPath}: weight_map is missing`, { file: indexPath });
      }
      weightMap = new Map(Object.entries(index.weight_map as Record<string, string>));
      return new ModelDirectory(dir, config, weightMap);
    }
    throw new ModelFormatError(`${dir}: neither ${SINGLE_FILE} nor ${INDEX_FILE} exists`, { dir });
  }

  has(name: string): boolean {
    return this.weightMap.has(name);
  }

  tensorNames(): IterableIterator<string> {
    return this.weightMap.keys();
  }

  /** The tensor's bytes exactly as stored (for hashing). */
  rawBytes(name: string): Uint8Array {
    return this.fileOf(name).readBytes(name);
  }

  rawBytesInto(name: string, at: number, into: Uint8Array): Uint8Array {
    return this.fileOf(name).readBytesInto(name, at, into);
  }

  info(name: string): TensorInfo {
    return this.fileOf(name).info(name);
  }

  /** Tensor `name` as float32 with its shape checked against `shape`. */
  tensor(name: string, shape: readonly number[], into?: Float32Array): Float32Array {
    return this.fileOf(name).readFloat32(name, shape, into);
  }

  openRows(name: string, shape: readonly [number, number]): MatrixRows {
    const bits = this.compression.matrices?.[FactorNames.base(name)]?.bits;
    if (bits === undefined) {
      const file = this.fileOf(name);
      return TensorRows.open(file.path, file.info(name), shape);
    }
    const located = (tensor: string): TensorInfo & { path: string } => {
      const file = this.fileOf(tensor);
      return { ...file.info(tensor), path: file.path };
    };
    const codes = located(FactorNames.packed(name));
    const scales = located(FactorNames.scales(name));
    return QuantizedRows.open({ codes, scales, bits, blockSize: this.compression.block_size! }, shape);
  }

  close(): void {
    for (const f of this.files.values()) f.close();
    this.files.clear();
  }

  private fileOf(name: string): SafetensorsFile {
    const fileName = this.weightMap.get(name);
    if (fileName === undefined) {
      throw new ModelFormatError(`${this.dir}: tensor ${name} is missing`, { dir: this.dir, tensor: name });
    }
    let file = this.files.get(fileName);
    if (file === undefined) {
      file = SafetensorsFile.open(join(this.dir, fileName));
      this.files.set(fileName, file);
    }
    return file;
  }
}

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (cause) {
    throw new ModelFormatError(`cannot read ${path}: ${(cause as Error).message}`, { file: path }, cause);
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new ModelFormatError(`${path} is not valid JSON: ${(cause as Error).message}`, { file: path }, cause);
  }
}
