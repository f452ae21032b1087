import { createInterface } from "node:readline";
import { Command } from "commander";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { TextTokenizer } from "../../engine/model/tokenizer.js";
import { Head } from "../../engine/runtime/head.js";
import { ChatSession, ContextExhaustedError } from "../chat/session.js";
import { ChatTemplate } from "../chat/template.js";
import { TextStream } from "../streamText.js";
import { integer } from "./options.js";
import { addPipelineFlags, openPipeline, type OpenedPipeline, type PipelineFlags } from "./pipelineFlags.js";
import { addSamplingFlags, samplingOf, type SamplingFlags } from "./samplingFlags.js";

interface ChatFlags extends PipelineFlags, SamplingFlags {
  model: string;
  system?: string;
  maxTokens: number;
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
    .option("--max-tokens <n>", "tokens per reply at most (fewer when the context has less room)", integer(1, 1_000_000), 128);
  // one sampling stream serves the whole chat: a seeded chat repeats exactly
  return addPipelineFlags(addSamplingFlags(command)).action(async (flags: ChatFlags) => {
    const model = ModelDirectory.open(flags.model);
    let head: Head | undefined;
    let layers: OpenedPipeline | undefined;
    let session: ChatSession | undefined;
    try {
      const tokenizer = TextTokenizer.load(flags.model);
      const template = ChatTemplate.forModel(flags.model);
      head = await Head.load(model, { threads: 1 });
      layers = await openPipeline(model, flags);
      session = new ChatSession(head, layers.pipeline, tokenizer, template, { ...samplingOf(flags), stopTokens: model.config.eosTokenIds });
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
