import { Command, Option } from "commander";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Head } from "../../engine/runtime/head.js";
import { EFedError, InvalidArgumentError } from "../../protocol/errors.js";
import { GenerationError, generate, sequenceLength, type GenerationResult, type LayerPipeline } from "../generate.js";
import { LocalPipeline } from "../localPipeline.js";
import { DEFAULT_ROUTE_TIMING } from "../routeOptions.js";
import { ACTIVATION_ENCODINGS, type ActivationEncoding } from "../../protocol/activations.js";
import { TextTokenizer } from "../../engine/model/tokenizer.js";
import { integer, integerList, number, routeOptions, type RouteFlags } from "./options.js";
import { openRoute } from "../route/openRoute.js";
import { addPaymentOptions, paymentFor, type PaymentFlags } from "../payment/generatePayment.js";

interface GenerateFlags extends RouteFlags, PaymentFlags {
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
  wire: ActivationEncoding;
  forward: boolean;
  connectTimeoutMs: number;
  stepTimeoutMs: number;
  threads: number;
  json?: boolean;
}

/** `efed generate`: run a whole model in this process (optionally split into shards) and print the continuation. */
export function generateCommand(): Command {
  const t = DEFAULT_ROUTE_TIMING;
  const command = new Command("generate");
  for (const option of routeOptions()) command.addOption(option);
  return addPaymentOptions(command)
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
    .addOption(new Option("--split <layers>", "run the layers as shards split at these boundaries, e.g. 2,4").argParser(integerList(1)).conflicts(["route", "rpc"]))
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
    .option("--json", "print one JSON object: prompt ids, generated ids, text, finish (and error when it failed)")
    .action(async (flags: GenerateFlags) => {
      if ((flags.prompt === undefined) === (flags.ids === undefined)) {
        throw new InvalidArgumentError("give exactly one of --prompt TEXT or --ids 1,2,3");
      }
      const paying = await paymentFor(flags); // the wallet first: a wrong password fails before the model loads
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
        try {
          pipeline =
            flags.route === undefined && flags.rpc === undefined
              ? await LocalPipeline.load(model, flags.split ?? [], { threads: flags.threads })
              : await openRoute(flags, model, flags.model, {
                  encoding: flags.wire,
                  forward: flags.forward,
                  connectTimeoutMs: flags.connectTimeoutMs,
                  stepTimeoutMs: flags.stepTimeoutMs,
                  ...paying?.pipelineOptions,
                });
          result = await generate(head, pipeline, promptIds, {
            maxTokens: flags.maxTokens,
            temperature: flags.temperature,
            topK: flags.topK,
            topP: flags.topP,
            repetitionPenalty: flags.repetitionPenalty,
            seed: flags.seed,
            stopTokens: model.config.eosTokenIds,
          });
        } catch (err) {
          // whatever was generated before the failure is printed; the error goes to stderr and the exit code
          failure = err instanceof GenerationError ? (err.cause as Error) : (err as Error);
          result = err instanceof GenerationError ? err.partial : { promptIds: [...promptIds], generatedIds: [], finish: "error" };
        }
        printResult(result, tokenizer, flags.json === true, failure);
        if (paying !== undefined) console.error(paying.report());
        if (failure !== undefined) throw failure;
      } finally {
        await pipeline?.release?.();
        pipeline?.close?.();
        await head?.release();
        model.close();
        paying?.close();
      }
    });
}

function printResult(result: GenerationResult, tokenizer: TextTokenizer | undefined, json: boolean, failure: Error | undefined): void {
  const text = tokenizer?.decode(result.generatedIds);
  if (json) {
    const error = failure === undefined ? {} : { error: { code: failure instanceof EFedError ? failure.code : "FAILED", message: failure.message } };
    console.log(JSON.stringify({ promptIds: result.promptIds, generatedIds: result.generatedIds, text: text ?? null, finish: result.finish, ...error }));
  } else if (failure === undefined || result.generatedIds.length > 0) {
    console.log(text ?? result.generatedIds.join(","));
  }
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
