import { Command } from "commander";
import { DEFAULT_PROMPTS_FILE, EVAL_DEFAULTS, evaluateModel, readPrompts, sampleCorpus } from "../compress/evaluate.js";
import { positiveInt } from "./options.js";

interface EvalFlags {
  model: string;
  reference: string;
  prompts: string;
  tokens: number;
  seed: number;
  threads: number;
  json?: boolean;
}

/** `efed eval`: how far a compressed variant's next-token distributions are from the reference's. */
export function evalCommand(): Command {
  return new Command("eval")
    .description("compare a model with its reference on text the reference samples itself (KL, top-1 agreement, perplexity ratio)")
    .requiredOption("--model <dir>", "model to evaluate (e.g. a compressed variant)")
    .requiredOption("--reference <dir>", "reference model (e.g. the dense original)")
    .option("--prompts <file>", "prompts to continue, one per line", DEFAULT_PROMPTS_FILE)
    .option("--tokens <n>", "tokens to sample from the reference", positiveInt(), EVAL_DEFAULTS.tokens)
    .option("--seed <n>", "sampling seed", positiveInt(), EVAL_DEFAULTS.seed)
    .option("--threads <n>", "intra-op threads", positiveInt(256), 1)
    .option("--json", "print the result as JSON")
    .action(async (flags: EvalFlags) => {
      const corpus = await sampleCorpus(flags.reference, readPrompts(flags.prompts), { tokens: flags.tokens, seed: flags.seed });
      const r = await evaluateModel(flags.reference, flags.model, corpus, { threads: flags.threads });
      if (flags.json === true) {
        console.log(JSON.stringify(r));
        return;
      }
      console.log(`positions            ${r.positions}`);
      console.log(`mean KL (nats)       ${r.meanKl.toFixed(4)}`);
      console.log(`p99 KL (nats)        ${r.p99Kl.toFixed(4)}`);
      console.log(`top-1 agreement      ${(100 * r.top1Agreement).toFixed(2)}%`);
      console.log(`perplexity ratio     ${r.perplexityRatio.toFixed(4)} (reference perplexity ${r.referencePerplexity.toFixed(2)})`);
    });
}
