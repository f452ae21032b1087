import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { keccak256 } from "ethers";
import { keccak256Streamed } from "../../protocol/keccak.js";
import { ModelFormatError } from "../errors.js";
import type { TensorSource } from "./tensorSource.js";

export const MANIFEST_FILE = "efed-manifest.json";
export const MANIFEST_VERSION = 1;

/**
 * What a model variant is: its architecture config, every tensor's dtype, shape and keccak256 of
 * its stored bytes, and the compression applied. The keccak256 of the manifest's canonical JSON is
 * the variant id that the registry, servers, verifiers and clients all use.
 */
export interface Manifest {
  version: number;
  /** config.json as parsed (Hugging Face field names). */
  config: Record<string, unknown>;
  /** Compression applied to the weights; { method: "none" } for a dense model. */
  compression: Record<string, unknown>;
  tensors: Record<string, { dtype: string; shape: number[]; keccak256: string }>;
}

/** JSON with object keys sorted at every level: the same manifest always serializes to the same bytes. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export function variantIdOf(manifest: Manifest): string {
  return keccak256(new TextEncoder().encode(canonicalJson(manifest)));
}

/** Hashes every tensor of `model` (reads each once, holds one at a time). */
export function buildManifest(model: TensorSource, compression: Record<string, unknown> = { method: "none" }): Manifest {
  const config = JSON.parse(readFileSync(join(model.dir, "config.json"), "utf8")) as Record<string, unknown>;
  const tensors: Manifest["tensors"] = {};
  for (const name of [...model.tensorNames()].sort()) {
    const info = model.info(name);
    tensors[name] = { dtype: info.dtype, shape: info.shape, keccak256: tensorHash(model, name) };
  }
  return { version: MANIFEST_VERSION, config, compression, tensors };
}

/** The manifest stored in the model directory, or undefined when there is none. */
export function readManifest(dir: string): Manifest | undefined {
  const path = join(dir, MANIFEST_FILE);
  if (!existsSync(path)) return undefined;
  try {
    const m = JSON.parse(readFileSync(path, "utf8")) as Manifest;
    if (m.version !== MANIFEST_VERSION || typeof m.tensors !== "object" || m.tensors === null) {
      throw new Error(`version ${String(m.version)} or tensors missing`);
    }
    return m;
  } catch (cause) {
    throw new ModelFormatError(`${path} is not a valid eFed manifest: ${(cause as Error).message}`, { file: path }, cause);
  }
}

export function writeManifest(dir: string, manifest: Manifest): string {
  writeFileSync(join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 1) + "\n");
  return variantIdOf(manifest);
}

/**
 * Checks that the tensors named by `names` in `model` hash to what `manifest` records, so a server
 * can prove to itself it serves the registered weights while reading only its own layers.
 */
export function verifyTensors(model: TensorSource, manifest: Manifest, names: Iterable<string>): void {
  for (const name of names) {
    const expected = manifest.tensors[name];
    if (expected === undefined) throw new ModelFormatError(`manifest has no tensor ${name}`, { tensor: name });
    const actual = tensorHash(model, name);
    if (actual !== expected.keccak256) {
      throw new ModelFormatError(`${model.dir}: tensor ${name} hashes to ${actual}, the manifest says ${expected.keccak256}`, {
        tensor: name,
      });
    }
  }
}

/** Bytes of a tensor hashed at a time: one reused buffer, not a fresh copy of every tensor. */
const HASH_CHUNK_BYTES = 8 << 20;
let hashChunk: Uint8Array | undefined;

/** keccak256 of tensor `name`'s stored bytes, read a chunk at a time. */
function tensorHash(model: TensorSource, name: string): string {
  const total = model.info(name).byteLength;
  hashChunk ??= new Uint8Array(HASH_CHUNK_BYTES);
  const chunk = hashChunk;
  return keccak256Streamed((update) => {
    for (let at = 0; at < total; at += chunk.byteLength) update(model.rawBytesInto(name, at, chunk.subarray(0, Math.min(chunk.byteLength, total - at))));
  });
}
