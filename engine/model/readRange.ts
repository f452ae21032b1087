import { readSync } from "node:fs";
import { ModelFormatError } from "../errors.js";

/**
 * Reads exactly `length` bytes at `position` of an open file, or says which tensor of which file is
 * truncated (model files are read by byte range: safetensors and GGUF alike).
 */
export function readRange(fd: number, position: number, length: number, path: string, tensor: string): Uint8Array {
  return readRangeInto(fd, position, new Uint8Array(length), path, tensor);
}

/** Fills `bytes` from `position` of an open file (as readRange) and returns it. */
export function readRangeInto(fd: number, position: number, bytes: Uint8Array, path: string, tensor: string): Uint8Array {
  let done = 0;
  while (done < bytes.byteLength) {
    const n = readSync(fd, bytes, done, bytes.byteLength - done, position + done);
    if (n === 0) throw new ModelFormatError(`${path}: tensor ${tensor} is truncated (file ends inside its data)`, { path, tensor });
    done += n;
  }
  return bytes;
}
