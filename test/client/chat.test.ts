import { spawn } from "node:child_process";
import { beforeAll, describe, expect, it } from "vitest";
import type { ModelDirectory } from "../../engine/model/modelDir.js";
import type { TextTokenizer } from "../../engine/model/tokenizer.js";
import type { Head } from "../../engine/runtime/head.js";
import { ChatSession, ContextExhaustedError } from "../../client/chat/session.js";
import { ChatTemplate, VERSE_TEMPLATE } from "../../client/chat/template.js";
import { generate, type LayerPipeline } from "../../client/generate.js";
import type { LocalPipeline } from "../../client/localPipeline.js";
import { RemotePipeline, type VerifiedReceipt } from "../../client/remotePipeline.js";
import { KJV, useShippedModel } from "./support/shippedModel.js";
import { EFED_BIN } from "../support/efedProcess.js";

const EOS = 2;
const shipped = useShippedModel();
let model: ModelDirectory;
let head: Head;
let local: LocalPipeline;
let tokenizer: TextTokenizer;
beforeAll(() => ({ model, head, local, tokenizer } = shipped.loaded));

/** `pipeline`, recording how many sequences were opened and the rows (tokens) of every step. */
function recording(pipeline: LayerPipeline): { pipeline: LayerPipeline; opened: number; steps: number[] } {
  const record = { opened: 0, steps: [] as number[], pipeline: undefined as unknown as LayerPipeline };
  record.pipeline = {
    openSequence: async (maxLength) => {
      record.opened++;
      const sequence = await pipeline.openSequence(maxLength);
      return {
        compute: (hidden) => {
          record.steps.push(hidden.length / model.config.hiddenSize);
          return sequence.compute(hidden);
        },
        close: () => sequence.close(),
      };
    },
  };
  return record;
}

const greedy = { temperature: 0, stopTokens: [EOS] };
const encode = (text: string): number[] => tokenizer.encode(text, { addSpecialTokens: false });

/** Two turns; checks turn 2 sent only its new tokens and equals one generation over the whole conversation. */
async function twoTurns(pipeline: LayerPipeline): Promise<{ sent: number[][]; steps: number[] }> {
  const rec = recording(pipeline);
  const session = new ChatSession(head, rec.pipeline, tokenizer, ChatTemplate.forModel(KJV), greedy);
  const t1 = await session.say("And God said", { maxTokens: 12 });
  const t2 = await session.say("The LORD is my shepherd", { maxTokens: 12 });
  await session.close();

  expect(session.template.origin).toBe("built-in verse template");
  expect(t1.sentIds).toEqual(encode("<s>And God said</s><s>"));
  expect(t1.sentIds[0]).toBe(1); // "<s>" in the template's text is the BOS token
  expect([t1.finish, t1.generatedIds.length]).toEqual(["length", 12]);
  // turn 2 sends the reply's last token (never computed) and the new message, nothing before them
  expect(t2.sentIds).toEqual([t1.generatedIds[11]!, ...encode("</s><s>The LORD is my shepherd</s><s>")]);
  expect(t2.restarted).toBe(false);
  expect(rec.opened).toBe(1);
  expect(rec.steps).toEqual([t1.sentIds.length, ...Array(11).fill(1), t2.sentIds.length, ...Array(11).fill(1)]);

  const whole = [...t1.sentIds, ...t1.generatedIds, ...t2.sentIds.slice(1)];
  expect((await generate(head, local, whole, { ...greedy, maxTokens: 12 })).generatedIds).toEqual(t2.generatedIds);
  expect(session.messages).toEqual([]);
  return { sent: [t1.sentIds, t2.sentIds], steps: rec.steps };
}

describe("ChatSession", () => {
  it("in process: turn 2 sends only its new tokens and equals one greedy generation over the concatenated prompt", async () => {
    await twoTurns(local);
  });

  it("on a route of two shard servers: the servers' sessions continue across turns", async () => {
    const { servers, urls, stop } = await shipped.startShards([[0, 4], [4, 8]]);
    try {
      const receipts: VerifiedReceipt[] = [];
      const route = await RemotePipeline.connect(
        urls,
        8,
        { onReceipt: (r) => receipts.push(r) },
      );
      try {
        const { sent } = await twoTurns(route);
        const first = receipts.filter((r) => r.receipt.server === servers[0]!.wallet.address);
        expect(new Set(first.map((r) => r.receipt.sessionId)).size).toBe(1); // one session for the whole chat
        expect(first.map((r) => Number(r.receipt.step))).toEqual([...Array(24).keys()]);
        expect(first.map((r) => Number(r.receipt.tokens))).toEqual([sent[0]!.length, ...Array(11).fill(1), sent[1]!.length, ...Array(11).fill(1)]);
      } finally {
        route.close();
      }
    } finally {
      await stop();
    }
  });

  it("starts a new sequence with the whole conversation when the template rewrites a reply", async () => {
    const shouting =
      "{% for m in messages %}{{ bos_token }}{% if m.role == 'assistant' %}{{ m.content | upper }}{% else %}{{ m.content }}{% endif %}{{ eos_token }}{% endfor %}" +
      "{% if add_generation_prompt %}{{ bos_token }}{% endif %}";
    const template = new ChatTemplate(shouting, "test", { bos_token: "<s>", eos_token: "</s>" });
    const rec = recording(local);
    const session = new ChatSession(head, rec.pipeline, tokenizer, template, greedy);
    const t1 = await session.say("And God said", { maxTokens: 6 });
    const t2 = await session.say("Amen", { maxTokens: 6 });
    await session.close();
    expect(t1.reply).not.toBe(t1.reply.toUpperCase());
    expect(t2.restarted).toBe(true);
    expect(rec.opened).toBe(2);
    expect(t2.sentIds).toEqual(encode(`<s>And God said</s><s>${t1.reply.toUpperCase()}</s><s>Amen</s><s>`));
    expect((await generate(head, local, t2.sentIds, { ...greedy, maxTokens: 6 })).generatedIds).toEqual(t2.generatedIds);
  });

  it("says clearly when the conversation no longer fits the context, and cuts a reply at the context", async () => {
    const session = new ChatSession(head, local, tokenizer, ChatTemplate.forModel(KJV), { ...greedy, contextTokens: 24 });
    const first = encode("<s>And God said</s><s>").length;
    const t1 = await session.say("And God said", { maxTokens: 100 });
    expect([t1.generatedIds.length, t1.finish, session.usedTokens]).toEqual([24 - first, "length", 24]);
    const more = encode("</s><s>Amen</s><s>").length;
    const err = await session.say("Amen", { maxTokens: 4 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ContextExhaustedError);
    expect((err as Error).message).toBe(
      `the conversation holds 24 tokens and this message needs ${more} more plus at least one for the reply, over the model's context of 24 tokens: start a new chat`,
    );
    await session.close();
  });

  it("renders the verse template and refuses a template that does not parse", () => {
    const template = new ChatTemplate(VERSE_TEMPLATE, "verse", { bos_token: "<s>", eos_token: "</s>" });
    const messages = [
      { role: "user" as const, content: "a" },
      { role: "assistant" as const, content: "b" },
    ];
    expect(template.render(messages, true)).toBe("<s>a</s><s>b</s><s>");
    expect(template.render(messages, false)).toBe("<s>a</s><s>b</s>");
    expect(() => new ChatTemplate("{% for %}", "bad.json", { bos_token: "", eos_token: "" })).toThrow(/^the chat template of bad.json does not parse: /);
  });
});

describe("efed chat", () => {
  it("streams each reply on its own line, keeping the conversation between lines", async () => {
    const session = new ChatSession(head, local, tokenizer, ChatTemplate.forModel(KJV), greedy);
    const expected = [(await session.say("And God said", { maxTokens: 10 })).reply, (await session.say("Amen", { maxTokens: 10 })).reply];
    await session.close();
    const child = spawn(process.execPath, [EFED_BIN, "chat", "--model", KJV, "--max-tokens", "10"], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdin.end("And God said\nAmen\n/exit\nnot read\n");
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect({ code, stderr: stderr.split("\n").filter((l) => l.startsWith("efed")) }).toEqual({ code: 0, stderr: [] });
    expect(stdout).toBe(`${expected[0]}\n${expected[1]}\n`);
  });
});
