import { Command, Option } from "commander";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Head } from "../../engine/runtime/head.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { GenerationError, generate, sequenceLength, type GenerationResult } from "../generate.js";
import { GenerationPrinter } from "../streamOutput.js";
import { TextTokenizer } from "../../engine/model/tokenizer.js";
import { integer, integerList } from "./options.js";
import { addPipelineFlags, openPipeline, type OpenedPipeline, type PipelineFlags } from "./pipelineFlags.js";
import { addSamplingFlags, samplingOf, type SamplingFlags } from "./samplingFlags.js";

interface GenerateFlags extends PipelineFlags, SamplingFlags {
  model: string;
  prompt?: string;
  ids?: number[];
  maxTokens: number;
  json?: boolean;
  jsonl?: boolean;
}

/** `efed generate`: run a whole model in this process (optionally split into shards) or on a route, streaming the continuation. */
export function generateCommand(): Command {
  const command = new Command("generate")
    .description("generate text with a model run in this process (layers optionally split into shards) or on a route of shard servers")
    .requiredOption("--model <dir>", "Hugging Face model directory (config.json, safetensors, tokenizer.json)")
    .addOption(new Option("--prompt <text>", "prompt text").conflicts("ids"))
    .addOption(new Option("--ids <ids>", "prompt as comma-separated token ids").argParser(integerList(0)))
    .requiredOption("--max-tokens <n>", "tokens to generate (with the prompt, at most the model's context)", integer(0, 1_000_000))
    .addOption(new Option("--json", "print one JSON object at the end: prompt ids, generated ids, text, finish, timing, servers and receipts with --route (and error when it failed)").conflicts("jsonl"))
    .option("--jsonl", "stream one JSON event per line: a token event per token, then done (or error) with what --json prints");
  return addPipelineFlags(addSamplingFlags(command)).action(async (flags: GenerateFlags) => {
    if ((flags.prompt === undefined) === (flags.ids === undefined)) {
      throw new InvalidArgumentError("give exactly one of --prompt TEXT or --ids 1,2,3");
    }
    const model = ModelDirectory.open(flags.model);
    let head: Head | undefined;
    let layers: OpenedPipeline | undefined;
    try {
      const tokenizer = tryTokenizer(flags.model, flags.prompt !== undefined);
      const promptIds = flags.ids ?? tokenizer!.encode(flags.prompt!);
      sequenceLength(promptIds.length, flags.maxTokens, model.config.maxPositionEmbeddings);
      // The head runs single-threaded: a second spinning thread pool in the same process steals the
      // shards' cores between steps (measured: 1.4× slower decode than a single-threaded head).
      head = await Head.load(model, { threads: 1 });
      let result: GenerationResult;
      let failure: Error | undefined;
      let receipts = 0;
      const printer = new GenerationPrinter(flags.json === true ? "json" : flags.jsonl === true ? "jsonl" : "text", tokenizer);
      try {
        layers = await openPipeline(model, flags, () => receipts++);
        printer.begin();
        result = await generate(head, layers.pipeline, promptIds, {
          ...samplingOf(flags),
          maxTokens: flags.maxTokens,
          stopTokens: model.config.eosTokenIds,
          onToken: (id) => printer.token(id),
        });
      } catch (err) {
        // whatever was generated before the failure is printed; the error goes to stderr and the exit code
        failure = err instanceof GenerationError ? (err.cause as Error) : (err as Error);
        result = err instanceof GenerationError ? err.partial : { promptIds: [...promptIds], generatedIds: [], finish: "error" };
      }
      printer.finish(result, failure, layers?.remote === true ? { servers: layers.servers, receipts } : {});
      if (layers?.costReport !== undefined) console.error(layers.costReport());
      if (failure !== undefined) throw failure;
    } finally {
      await layers?.close();
      await head?.release();
      model.close();
    }
  });
}

/** The tokenizer, required for text prompts; optional (ids only, no text) otherwise. */
function tryTokenizer(dir: string, required: boolean): TextTokenizer | undefined {
  try {
    return TextTokenizer.load(dir);
  } catch (err) {
    if (required) throw err;
    return undefined;
  }
}
