import { Command, Option } from "commander";
import { compressModel, DEFAULTS, ranksOf } from "../compress/compressModel.js";
import { METHODS } from "../compress/method.js";
import { accuracyLevel, fraction, positiveInt, quantBits } from "./options.js";
import type { QuantBits } from "../../engine/model/projection.js";
import type { QuantAccuracyLevel } from "../../engine/model/compression.js";
import { phaseProgress } from "./progress.js";

interface CompressFlags {
  model: string;
  out: string;
  method: string;
  ratio?: number;
  energy?: number;
  rank?: number;
  ranksFrom?: string;
  calib?: string;
  calibIds?: string;
  calibTokens: number;
  blockSize: number;
  accuracyLevel?: QuantAccuracyLevel;
  headBits?: QuantBits;
  json?: boolean;
}

/** `efed compress`: SVD (plain or activation-aware) and/or quantized layers, as a new model variant. */
export function compressCommand(): Command {
  return new Command("compress")
    .description("compress a dense model's attention and MLP matrices into a new model directory (a new variant)")
    .requiredOption("--model <dir>", "dense Hugging Face model directory")
    .requiredOption("--out <dir>", "directory to write the compressed model to")
    .addOption(new Option("--method <method>", "compression method").choices(METHODS).makeOptionMandatory())
    .option("--ratio <r>", "fraction of the matrices' weights to remove, in (0, 1); ranks from one global budget", fraction)
    .option("--energy <e>", "fraction of each matrix's spectral energy to keep, in (0, 1) (the paper's threshold)", fraction)
    .option("--rank <r>", "one rank for every matrix (at most each matrix's break-even rank)", positiveInt())
    .option("--ranks-from <dir>", "use the per-matrix ranks of another compressed variant (compare methods at equal ranks)")
    .option("--calib <file>", "calibration text for svd-whiten (default: a shipped King James excerpt; needs the model's tokenizer.json)")
    .option("--calib-ids <file>", "calibration token ids for svd-whiten (integers separated by spaces or commas); without a tokenizer and without this, calibration is sampled from the model")
    .option("--calib-tokens <n>", "calibration tokens", positiveInt(), DEFAULTS.calibTokens)
    .option("--block-size <n>", "quantization block size (16, 32, 64, 128 or 256)", positiveInt(), DEFAULTS.blockSize)
    .option("--accuracy-level <level>", "MatMulNBits accuracy level of the quantized layers: 0 = float activations (audited at the dense tolerance; int4 default), 4 = activations rounded to int8 per block (faster, audited at 0.25; int8 default)", accuracyLevel)
    .option("--head-bits <bits>", "also quantize the embeddings and LM head (8 or 4; the client's side: faster decode, fewer bytes)", quantBits)
    .option("--json", "print the report as JSON")
    .action(async (flags: CompressFlags) => {
      const progress = phaseProgress();
      const started = performance.now();
      const report = await compressModel(flags.model, flags.out, {
        method: flags.method,
        ratio: flags.ratio,
        energy: flags.energy,
        rank: flags.rank,
        ranks: flags.ranksFrom === undefined ? undefined : ranksOf(flags.ranksFrom),
        calibFile: flags.calib,
        calibIds: flags.calibIds,
        calibTokens: flags.calibTokens,
        blockSize: flags.blockSize,
        accuracyLevel: flags.accuracyLevel,
        headBits: flags.headBits,
        onProgress: progress.update,
      }).finally(progress.stop);
      if (flags.json === true) {
        console.log(JSON.stringify(report, null, 1));
        return;
      }
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      console.log(`${flags.out}: ${report.method}, ${(100 * report.parameterReduction).toFixed(1)}% of the matrices' weights removed, ${seconds} s`);
      if (report.slowestSvd !== undefined) {
        const s = report.slowestSvd;
        console.log(`SVDs ${report.svdSeconds.toFixed(1)} s in all; slowest ${s.name} (${s.rows}×${s.cols}) ${s.seconds.toFixed(2)} s`);
      }
      console.log(`variant id ${report.variantId}`);
    });
}
