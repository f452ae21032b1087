import { Command, Option } from "commander";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Head } from "../../engine/runtime/head.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { generate } from "../generate.js";
import { LocalPipeline } from "../localPipeline.js";
import { RemotePipeline } from "../remotePipeline.js";
import type { LayerPipeline } from "../generate.js";
import { ACTIVATION_ENCODINGS, type ActivationEncoding } from "../../protocol/activations.js";
import { TextTokenizer } from "../../engine/model/tokenizer.js";
import { integer, integerList, number } from "./options.js";

interface GenerateFlags {
  model: string;
  prompt?: string;
  ids?: number[];
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  seed: number;
  split?: number[];
  route?: string[];
  wire: ActivationEncoding;
  forward: boolean;
  threads: number;
  json?: boolean;
}

/** `efed generate`: run a whole model in this process (optionally split into shards) and print the continuation. */
export function generateCommand(): Command {
  return new Command("generate")
    .description("generate text with a model run in this process (layers optionally split into shards)")
    .requiredOption("--model <dir>", "Hugging Face model directory (config.json, safetensors, tokenizer.json)")
    .addOption(new Option("--prompt <text>", "prompt text").conflicts("ids"))
    .addOption(new Option("--ids <ids>", "prompt as comma-separated token ids").argParser(integerList(0)))
    .requiredOption("--max-tokens <n>", "tokens to generate", integer(0, 1_000_000))
    .option("--temperature <t>", "0 = greedy", number(0), 0)
    .option("--top-k <k>", "sample from the k most likely tokens (0 = all)", integer(0), 0)
    .option("--top-p <p>", "nucleus sampling mass", number(Number.MIN_VALUE, 1), 1)
    .option("--repetition-penalty <r>", "> 1 discourages repeats", number(Number.MIN_VALUE), 1)
    .option("--seed <n>", "seed of the sampling stream", integer(0, 2 ** 31 - 1), 0)
    .addOption(new Option("--split <layers>", "run the layers as shards split at these boundaries, e.g. 2,4").argParser(integerList(1)).conflicts("route"))
    .option("--route <urls>", "run the layers on these shard servers, in order (comma-separated ws:// URLs)", (v: string) =>
      v.split(",").map((u) => u.trim()),
    )
    .addOption(new Option("--wire <encoding>", "hidden-state encoding on the wire with --route").choices(ACTIVATION_ENCODINGS).default("fp32"))
    .option("--no-forward", "with --route: relay every server's output through this client instead of server to server")
    .option("--threads <n>", "intra-op threads of the layers' ONNX Runtime sessions (the head uses one)", integer(1, 256), 1)
    .option("--json", "print one JSON object: prompt ids, generated ids, text")
    .action(async (flags: GenerateFlags) => {
      if ((flags.prompt === undefined) === (flags.ids === undefined)) {
        throw new InvalidArgumentError("give exactly one of --prompt TEXT or --ids 1,2,3");
      }
      const model = ModelDirectory.open(flags.model);
      const tokenizer = tryTokenizer(flags.model, flags.prompt !== undefined);
      const promptIds = flags.ids ?? tokenizer!.encode(flags.prompt!);
      const runtime = { threads: flags.threads };
      // The head runs single-threaded: a second spinning thread pool in the same process steals the
      // shards' cores between steps (measured: 1.4× slower decode than a single-threaded head).
      const head = await Head.load(model, { threads: 1 });
      const pipeline: LayerPipeline & { release?(): Promise<void>; close?(): void } =
        flags.route === undefined
          ? await LocalPipeline.load(model, flags.split ?? [], runtime)
          : await RemotePipeline.connect(flags.route, model.config.numLayers, { encoding: flags.wire, forward: flags.forward });
      let result;
      try {
        result = await generate(head, pipeline, promptIds, {
          maxTokens: flags.maxTokens,
          temperature: flags.temperature,
          topK: flags.topK,
          topP: flags.topP,
          repetitionPenalty: flags.repetitionPenalty,
          seed: flags.seed,
          stopTokens: model.config.eosTokenIds,
        });
      } finally {
        await pipeline.release?.();
        pipeline.close?.();
        await head.release();
        model.close();
      }
      const text = tokenizer?.decode(result.generatedIds);
      if (flags.json === true) {
        console.log(JSON.stringify({ promptIds: result.promptIds, generatedIds: result.generatedIds, text: text ?? null, finish: result.finish }));
      } else {
        console.log(text ?? result.generatedIds.join(","));
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
