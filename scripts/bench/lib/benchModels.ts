import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildManifest, readManifest, writeManifest } from "../../../engine/model/manifest.js";
import { ModelDirectory } from "../../../engine/model/modelDir.js";
import { PUBLIC_SHAPES, writeRandomModel } from "../../../engine/model/randomModel.js";

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const cacheDir = join(REPO_ROOT, ".cache", "bench-models");

/**
 * The random-weight model at the shape of public model `name`, written once into .cache/ (with
 * its manifest, so servers need not hash the whole model at start).
 */
export function ensureGenerated(name: string): string {
  const dir = join(cacheDir, name);
  if (!existsSync(join(dir, "model.safetensors"))) {
    console.error(`writing random-weight ${name} to ${dir} …`);
    mkdirSync(dir, { recursive: true });
    writeRandomModel(dir, PUBLIC_SHAPES[name]!, { seed: 1, dtype: "BF16" });
  }
  if (readManifest(dir) === undefined) {
    const model = ModelDirectory.open(dir);
    writeManifest(dir, buildManifest(model));
    model.close();
  }
  return dir;
}
