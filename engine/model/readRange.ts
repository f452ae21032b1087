import { readSync } from "node:fs";
import { ModelFormatError } from "../errors.js";

/**
 * Reads exactly `length` bytes at `position` of an open file, or says which tensor of which file is
 * truncated (model files are read by byte range: safetensors and GGUF alike).
 */
export function readRange(fd: number, position: number, length: number, path: string, tensor: string): Uint8Array {
  const bytes = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, bytes, done, length - done, position + done);
    if (n === 0) throw new ModelFormatError(`${path}: tensor ${tensor} is truncated (file ends inside its data)`, { path, tensor });
    done += n;
  }
  return bytes;
}
