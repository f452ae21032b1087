import { Command, Option } from "commander";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Head } from "../../engine/runtime/head.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { GenerationError, generate, sequenceLength, type GenerationResult, type LayerPipeline } from "../generate.js";
import { LocalPipeline } from "../localPipeline.js";
import { RemotePipeline } from "../remotePipeline.js";
import { DEFAULT_ROUTE_TIMING } from "../routeOptions.js";
import { GenerationPrinter } from "../streamOutput.js";
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
  connectTimeoutMs: number;
  stepTimeoutMs: number;
  threads: number;
  json?: boolean;
  jsonl?: boolean;
}

/** `efed generate`: run a whole model in this process (optionally split into shards) and print the continuation. */
export function generateCommand(): Command {
  const t = DEFAULT_ROUTE_TIMING;
  return new Command("generate")
    .description("generate text with a model run in this process (layers optionally split into shards) or on a route of shard servers")
    .requiredOption("--model <dir>", "Hugging Face model directory (config.json, safetensors, tokenizer.json)")
    .addOption(new Option("--prompt <text>", "prompt text").conflicts("ids"))
    .addOption(new Option("--ids <ids>", "prompt as comma-separated token ids").argParser(integerList(0)))
    .requiredOption("--max-tokens <n>", "tokens to generate (with the prompt, at most the model's context)", integer(0, 1_000_000))
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
    .option("--connect-timeout-ms <ms>", "with --route: time to reach each server", integer(1), t.connectTimeoutMs)
    .option(
      "--step-timeout-ms <ms>",
      `with --route: time each server gets for its part of a step (plus ${t.stepTimeoutPerTokenMs} ms per token of the step)`,
      integer(1),
      t.stepTimeoutMs,
    )
    .option("--threads <n>", "intra-op threads of the layers' ONNX Runtime sessions (the head uses one)", integer(1, 256), 1)
    .addOption(new Option("--json", "print one JSON object at the end: prompt ids, generated ids, text, finish, timing, servers and receipts with --route (and error when it failed)").conflicts("jsonl"))
    .option("--jsonl", "stream one JSON event per line: a token event per token, then done (or error) with what --json prints")
    .action(async (flags: GenerateFlags) => {
      if ((flags.prompt === undefined) === (flags.ids === undefined)) {
        throw new InvalidArgumentError("give exactly one of --prompt TEXT or --ids 1,2,3");
      }
      const model = ModelDirectory.open(flags.model);
      let head: Head | undefined;
      let pipeline: (LayerPipeline & { release?(): Promise<void>; close?(): void }) | undefined;
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
          pipeline =
            flags.route === undefined
              ? await LocalPipeline.load(model, flags.split ?? [], { threads: flags.threads })
              : await RemotePipeline.connect(flags.route, model.config.numLayers, {
                  encoding: flags.wire,
                  forward: flags.forward,
                  connectTimeoutMs: flags.connectTimeoutMs,
                  stepTimeoutMs: flags.stepTimeoutMs,
                  onReceipt: () => receipts++,
                });
          printer.begin();
          result = await generate(head, pipeline, promptIds, {
            maxTokens: flags.maxTokens,
            temperature: flags.temperature,
            topK: flags.topK,
            topP: flags.topP,
            repetitionPenalty: flags.repetitionPenalty,
            seed: flags.seed,
            stopTokens: model.config.eosTokenIds,
            onToken: (id) => printer.token(id),
          });
        } catch (err) {
          // whatever was generated before the failure is printed; the error goes to stderr and the exit code
          failure = err instanceof GenerationError ? (err.cause as Error) : (err as Error);
          result = err instanceof GenerationError ? err.partial : { promptIds: [...promptIds], generatedIds: [], finish: "error" };
        }
        printer.finish(result, failure, pipeline instanceof RemotePipeline ? { servers: pipeline.connections.map((c) => c.url), receipts } : {});
        if (failure !== undefined) throw failure;
      } finally {
        await pipeline?.release?.();
        pipeline?.close?.();
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
