import { createInterface } from "node:readline";
import { Command } from "commander";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { TextTokenizer } from "../../engine/model/tokenizer.js";
import { Head } from "../../engine/runtime/head.js";
import { ChatSession, ContextExhaustedError } from "../chat/session.js";
import { ChatTemplate } from "../chat/template.js";
import { TextStream } from "../streamText.js";
import { integer, number } from "./options.js";
import { addPipelineFlags, openPipeline, type OpenedPipeline, type PipelineFlags } from "./pipelineFlags.js";

interface ChatFlags extends PipelineFlags {
  model: string;
  system?: string;
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  seed: number;
}

const HELP = "type a message and Enter; /reset starts a new conversation, /exit (or end of input) quits";

/**
 * `efed chat`: a conversation read line by line from stdin, each reply streamed to stdout as it is
 * generated. The conversation's KV caches stay in the layers (on the servers with --route) between
 * turns: a turn sends only its new tokens.
 */
export function chatCommand(): Command {
  const command = new Command("chat")
    .description("chat with a model run in this process or on a route of shard servers; the conversation stays cached between turns")
    .requiredOption("--model <dir>", "Hugging Face model directory (config.json, safetensors, tokenizer.json)")
    .option("--system <text>", "a system message that opens the conversation")
    .option("--max-tokens <n>", "tokens per reply at most (fewer when the context has less room)", integer(1, 1_000_000), 128)
    .option("--temperature <t>", "0 = greedy", number(0), 0)
    .option("--top-k <k>", "sample from the k most likely tokens (0 = all)", integer(0), 0)
    .option("--top-p <p>", "nucleus sampling mass", number(Number.MIN_VALUE, 1), 1)
    .option("--repetition-penalty <r>", "> 1 discourages repeats", number(Number.MIN_VALUE), 1)
    .option("--seed <n>", "seed of the sampling stream (one stream for the whole chat)", integer(0, 2 ** 31 - 1), 0);
  return addPipelineFlags(command).action(async (flags: ChatFlags) => {
    const model = ModelDirectory.open(flags.model);
    let head: Head | undefined;
    let layers: OpenedPipeline | undefined;
    let session: ChatSession | undefined;
    try {
      const tokenizer = TextTokenizer.load(flags.model);
      const template = ChatTemplate.forModel(flags.model);
      head = await Head.load(model, { threads: 1 });
      layers = await openPipeline(model, flags);
      session = new ChatSession(head, layers.pipeline, tokenizer, template, {
        temperature: flags.temperature,
        topK: flags.topK,
        topP: flags.topP,
        repetitionPenalty: flags.repetitionPenalty,
        seed: flags.seed,
        stopTokens: model.config.eosTokenIds,
      });
      const interactive = process.stdin.isTTY === true;
      if (interactive) console.error(`chat template: ${template.origin}; layers: ${layers.servers.join(", ")}\n${HELP}`);
      const lines = createInterface({ input: process.stdin, terminal: false });
      let system = flags.system;
      if (interactive) process.stderr.write("> ");
      for await (const line of lines) {
        const message = line.trim();
        if (message === "/exit") break;
        if (message === "/reset") {
          await session.close();
          system = flags.system;
          console.error("(new conversation)");
        } else if (message !== "") {
          if (system !== undefined) {
            // the system message opens the conversation; it is sent with the first user message
            session.messages.push({ role: "system", content: system });
            system = undefined;
          }
          await replyTo(session, tokenizer, message, flags.maxTokens);
        }
        if (interactive) process.stderr.write("> ");
      }
    } finally {
      await session?.close();
      await layers?.close();
      await head?.release();
      model.close();
    }
  });
}

/** One turn: the reply streamed to stdout; a conversation that no longer fits says so and the chat goes on. */
async function replyTo(session: ChatSession, tokenizer: TextTokenizer, message: string, maxTokens: number): Promise<void> {
  const stream = new TextStream(tokenizer);
  try {
    const turn = await session.say(message, { maxTokens, onToken: (id) => void process.stdout.write(stream.push(id)) });
    process.stdout.write(`${stream.flush()}\n`);
    if (turn.restarted) console.error("(the chat template rewrote the conversation: it was sent again in full)");
    if (turn.finish === "length") console.error(`(reply cut at ${turn.generatedIds.length} tokens; the conversation holds ${session.usedTokens})`);
  } catch (err) {
    if (!(err instanceof ContextExhaustedError)) throw err;
    console.error(`efed chat: ${err.message} (type /reset)`);
  }
}
