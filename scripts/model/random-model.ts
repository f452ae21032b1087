/**
 * Writes a seeded random-weight model at the exact shape of a public model, for speed benchmarks.
 *
 *   npx tsx scripts/model/random-model.ts --shape smollm2-135m --out .cache/bench-models/smollm2-135m [--seed 1] [--dtype BF16]
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { PUBLIC_SHAPES, writeRandomModel } from "../../engine/model/randomModel.js";

const program = new Command()
  .name("random-model")
  .description("write a random-weight Hugging Face model directory at the shape of a public model")
  .addOption(new Option("--shape <name>", "public model shape").choices(Object.keys(PUBLIC_SHAPES)).makeOptionMandatory())
  .requiredOption("--out <dir>", "directory to write config.json and model.safetensors to")
  .option("--seed <n>", "random seed", (v) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`"${v}" is not an integer.`);
    return n;
  }, 1)
  .addOption(new Option("--dtype <dtype>", "tensor dtype").choices(["F32", "F16", "BF16"]).default("BF16"))
  .parse();

const opts = program.opts<{ shape: string; out: string; seed: number; dtype: "F32" | "F16" | "BF16" }>();
const config = writeRandomModel(opts.out, PUBLIC_SHAPES[opts.shape]!, { seed: opts.seed, dtype: opts.dtype });
console.log(`wrote ${opts.shape} (${config.numLayers} layers, hidden ${config.hiddenSize}) to ${opts.out}`);
