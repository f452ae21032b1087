import type { Command } from "commander";
import type { SamplingOptions } from "../sampler.js";
import { integer, number } from "./options.js";

/** The sampling flags shared by `efed generate` and `efed chat`. */
export interface SamplingFlags {
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  seed: number;
}

export function addSamplingFlags(command: Command): Command {
  return command
    .option("--temperature <t>", "0 = greedy", number(0), 0)
    .option("--top-k <k>", "sample from the k most likely tokens (0 = all)", integer(0), 0)
    .option("--top-p <p>", "nucleus sampling mass", number(Number.MIN_VALUE, 1), 1)
    .option("--repetition-penalty <r>", "> 1 discourages repeats", number(Number.MIN_VALUE), 1)
    .option("--seed <n>", "seed of the sampling stream", integer(0, 2 ** 31 - 1), 0);
}

export function samplingOf(flags: SamplingFlags): SamplingOptions {
  return { temperature: flags.temperature, topK: flags.topK, topP: flags.topP, repetitionPenalty: flags.repetitionPenalty, seed: flags.seed };
}
