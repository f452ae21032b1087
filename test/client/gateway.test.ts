import OpenAI, { type APIError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TextTokenizer } from "../../engine/model/tokenizer.js";
import type { Head } from "../../engine/runtime/head.js";
import { BatchingHead } from "../../client/batchingHead.js";
import { ChatTemplate } from "../../client/chat/template.js";
import { generate, type LayerPipeline } from "../../client/generate.js";
import { GatewayModel, type OpenedLayers } from "../../client/gateway/models.js";
import { buildGateway } from "../../client/gateway/server.js";
import { WalletError } from "../../client/wallet/walletError.js";
import { gateSteps } from "../../client/gateway/stepGate.js";
import type { LocalPipeline } from "../../client/localPipeline.js";
import { RemotePipeline } from "../../client/remotePipeline.js";
import { KJV, useShippedModel, type ShardServers } from "./support/shippedModel.js";

const ID = "kjv-llama-6m";
const EOS = 2;
const shipped = useShippedModel();
let head: Head;
let local: LocalPipeline;
let tokenizer: TextTokenizer;
let template: ChatTemplate;
beforeAll(() => {
  ({ head, local, tokenizer } = shipped.loaded);
  template = ChatTemplate.forModel(KJV);
});

interface Running {
  url: string;
  client: OpenAI;
  close(): Promise<void>;
}

/** A gateway on a free loopback port serving the shipped model with the layers `openLayers` gives. */
async function startGateway(openLayers: () => Promise<OpenedLayers>, extra: { maxActiveSequences?: number; bodyLimitBytes?: number } = {}): Promise<Running> {
  const served = new GatewayModel({ id: ID, head: new BatchingHead(head), tokenizer, template, eosTokenIds: [EOS], openLayers, retryAfterS: 7 });
  const app = buildGateway({ models: [served], ...extra });
  const url = await app.listen({ port: 0, host: "127.0.0.1" });
  return {
    url,
    client: new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 }),
    close: async () => {
      await app.close();
      await served.close();
    },
  };
}

const inProcess = (): Promise<OpenedLayers> => Promise.resolve({ pipeline: local, servers: ["in-process"], close: async () => {} });

/** What the library gives for a prompt: the reference every answer is compared with. */
async function reference(promptIds: number[], maxTokens: number, sampling: { temperature: number; topP?: number; seed?: number } = { temperature: 0 }): Promise<{ ids: number[]; text: string; finish: string }> {
  const r = await generate(head, local, promptIds, { ...sampling, maxTokens, stopTokens: [EOS] });
  return { ids: r.generatedIds, text: tokenizer.decode(r.generatedIds), finish: r.finish };
}

const chatIds = (content: string): number[] => tokenizer.encode(template.render([{ role: "user", content }], true), { addSpecialTokens: false });
const QUESTION = "And God said";

async function post(url: string, path: string, body: unknown): Promise<{ status: number; headers: Headers; json: Record<string, unknown> }> {
  const r = await fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) });
  return { status: r.status, headers: r.headers, json: (await r.json()) as Record<string, unknown> };
}

/** The features every backend must serve the same way. */
function commonChecks(start: () => Promise<{ gateway: Running; servers: string[] }>, stop: () => Promise<void>): void {
  let gateway: Running;
  let servers: string[];
  beforeAll(async () => ({ gateway, servers } = await start()));
  afterAll(stop);

  it("chat, not streamed: the library's greedy text, usage, and the servers in a header", async () => {
    const expected = await reference(chatIds(QUESTION), 16);
    const { data, response } = await gateway.client.chat.completions
      .create({ model: ID, messages: [{ role: "user", content: QUESTION }], max_tokens: 16, temperature: 0 })
      .withResponse();
    expect(data.object).toBe("chat.completion");
    expect(data.model).toBe(ID);
    expect(data.choices).toEqual([{ index: 0, message: { role: "assistant", content: expected.text, refusal: null }, logprobs: null, finish_reason: "length" }]);
    expect(data.usage).toEqual({ prompt_tokens: chatIds(QUESTION).length, completion_tokens: 16, total_tokens: chatIds(QUESTION).length + 16 });
    expect(response.headers.get("x-efed-servers")).toBe(servers.join(", "));
  });

  it("chat, streamed: deltas that make the same text, a finish chunk, the usage chunk, [DONE]", async () => {
    const expected = await reference(chatIds(QUESTION), 16);
    const stream = await gateway.client.chat.completions.create({
      model: ID,
      messages: [{ role: "user", content: QUESTION }],
      max_completion_tokens: 16,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: "assistant", content: "" });
    const text = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? "")).join("");
    expect(text).toBe(expected.text);
    expect(chunks.length).toBeGreaterThan(3); // opening, several content deltas, finish, usage
    expect(chunks.at(-2)!.choices).toEqual([{ index: 0, delta: {}, logprobs: null, finish_reason: "length" }]);
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage).toEqual({ prompt_tokens: chatIds(QUESTION).length, completion_tokens: 16, total_tokens: chatIds(QUESTION).length + 16 });
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });

  it("completions, streamed and not: the library's text for a text prompt (BOS added)", async () => {
    const expected = await reference(tokenizer.encode("In the beginning"), 12);
    const whole = await gateway.client.completions.create({ model: ID, prompt: "In the beginning", max_tokens: 12, temperature: 0 });
    expect([whole.object, whole.choices[0]!.text, whole.choices[0]!.finish_reason]).toEqual(["text_completion", expected.text, "length"]);
    const promptTokens = tokenizer.encode("In the beginning").length;
    expect(promptTokens).toBe(5); // <s> and four tokens
    expect(whole.usage).toEqual({ prompt_tokens: promptTokens, completion_tokens: 12, total_tokens: promptTokens + 12 });
    const stream = await gateway.client.completions.create({ model: ID, prompt: "In the beginning", max_tokens: 12, temperature: 0, stream: true });
    let text = "";
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect([text, finish]).toEqual([expected.text, "length"]);
  });

  it("n choices with a seed: choice i is the library's sampling with seed + i, and the request repeats exactly", async () => {
    const ask = (): Promise<OpenAI.Chat.Completions.ChatCompletion> =>
      gateway.client.chat.completions.create({ model: ID, messages: [{ role: "user", content: QUESTION }], max_tokens: 12, temperature: 1, top_p: 0.9, seed: 41, n: 3 });
    const [a, b] = await Promise.all([ask(), ask()]);
    const texts = a.choices.map((c) => c.message.content);
    expect(b.choices.map((c) => c.message.content)).toEqual(texts);
    expect(a.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    for (let i = 0; i < 3; i++) expect(texts[i]).toBe((await reference(chatIds(QUESTION), 12, { temperature: 1, topP: 0.9, seed: 41 + i })).text);
    expect(new Set(texts).size).toBeGreaterThan(1);
    expect(a.usage!.completion_tokens).toBe(a.choices.length * 12);
  });

  it("four concurrent streams each get the text they would get alone", async () => {
    const questions = ["And God said", "The LORD is my shepherd", "Blessed are the meek", "In the beginning"];
    const expected = await Promise.all(questions.map((q) => reference(chatIds(q), 12)));
    const texts = await Promise.all(
      questions.map(async (q) => {
        const stream = await gateway.client.chat.completions.create({ model: ID, messages: [{ role: "user", content: q }], max_tokens: 12, temperature: 0, stream: true });
        let text = "";
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
        return text;
      }),
    );
    expect(texts).toEqual(expected.map((e) => e.text));
  });
}

describe("gateway, layers in process", () => {
  let gateway: Running;
  commonChecks(
    async () => {
      gateway = await startGateway(inProcess);
      return { gateway, servers: ["in-process"] };
    },
    () => gateway.close(),
  );

  it("lists and retrieves the model; an unknown one is a 404, never another model", async () => {
    const list = await gateway.client.models.list();
    expect(list.data).toEqual([{ id: ID, object: "model", created: expect.any(Number), owned_by: "efed" }]);
    expect((await gateway.client.models.retrieve(ID)).id).toBe(ID);
    const err = await gateway.client.models.retrieve("kjv-llama").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect([(err as APIError).status, (err as APIError).code]).toEqual([404, "model_not_found"]);
    const chat = await gateway.client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] }).catch((e: unknown) => e);
    expect(chat).toBeInstanceOf(OpenAI.NotFoundError);
    expect((chat as APIError).message).toBe("404 The model 'gpt-4o' does not exist on this gateway (GET /v1/models lists those it serves)");
  });

  it("stop strings split across tokens end the text before them, streamed or not, and are never sent", async () => {
    const expected = await reference(chatIds(QUESTION), 16);
    const pieces = expected.ids.map((id, i) => tokenizer.decode(expected.ids.slice(0, i + 1)));
    // a stop string made of the end of token 4 and the start of token 5
    const [before, after] = [pieces[3]!, pieces[4]!];
    const stop = before.slice(-2) + after.slice(before.length, before.length + 2);
    const at = expected.text.indexOf(stop);
    expect(at).toBe(before.length - 2);
    const whole = await gateway.client.chat.completions.create({ model: ID, messages: [{ role: "user", content: QUESTION }], max_tokens: 16, temperature: 0, stop: ["never here", stop] });
    expect([whole.choices[0]!.message.content, whole.choices[0]!.finish_reason]).toEqual([expected.text.slice(0, at), "stop"]);
    expect(whole.usage!.completion_tokens).toBe(5);
    const stream = await gateway.client.chat.completions.create({ model: ID, messages: [{ role: "user", content: QUESTION }], max_tokens: 16, temperature: 0, stop, stream: true });
    const deltas: string[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      deltas.push(chunk.choices[0]?.delta.content ?? "");
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect([deltas.join(""), finish]).toEqual([expected.text.slice(0, at), "stop"]);
  });

  it("logprobs: chat gives each token with its top alternatives; completions the legacy shape", async () => {
    const expected = await reference(chatIds(QUESTION), 6);
    const chat = await gateway.client.chat.completions.create({ model: ID, messages: [{ role: "user", content: QUESTION }], max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 3 });
    const content = chat.choices[0]!.logprobs!.content!;
    expect(content.map((t) => t.token)).toEqual(expected.ids.map((id) => tokenizer.decode([id])));
    expect(content.map((t) => t.token).join("")).toBe(chat.choices[0]!.message.content);
    for (const t of content) {
      expect(t.top_logprobs.length).toBe(3);
      expect(t.top_logprobs[0]).toEqual({ token: t.token, logprob: t.logprob, bytes: [...Buffer.from(t.token)] }); // greedy takes the most likely
      expect(t.logprob).toBeLessThan(0);
      expect(t.top_logprobs[1]!.logprob).toBeLessThanOrEqual(t.top_logprobs[0]!.logprob);
      expect(t.top_logprobs[2]!.logprob).toBeLessThanOrEqual(t.top_logprobs[1]!.logprob);
    }
    const text = await gateway.client.completions.create({ model: ID, prompt: tokenizer.encode("In the beginning"), max_tokens: 3, temperature: 0, logprobs: 2 });
    const lp = text.choices[0]!.logprobs!;
    expect(lp.tokens!.join("")).toBe(text.choices[0]!.text);
    expect(lp.token_logprobs!.length).toBe(3);
    expect(lp.top_logprobs!.map((t) => Object.keys(t).length)).toEqual([2, 2, 2]);
    expect(lp.text_offset).toEqual([0, lp.tokens![0]!.length, lp.tokens![0]!.length + lp.tokens![1]!.length]);
  });

  it("a bad body gets a 400 naming the field (openai client and plain HTTP)", async () => {
    const err = await gateway.client.chat.completions.create({ model: ID, messages: [{ role: "user", content: "x" }], temperature: 3 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect([(err as APIError).param, (err as APIError).type]).toEqual(["temperature", "invalid_request_error"]);
    const cases: [unknown, string, string][] = [
      [{ model: ID, messages: [{ role: "user", content: "x" }], temperature: "hot" }, "temperature", "temperature must be number or null"],
      [{ model: ID }, "messages", "messages is required"],
      [{ messages: [{ role: "user", content: "x" }] }, "model", "model is required"],
      [{ model: ID, messages: [{ role: "robot", content: "x" }] }, "messages[0].role", "messages[0].role must be equal to one of the allowed values: system, developer, user, assistant"],
      [{ model: ID, messages: [{ role: "user", content: "x" }], n: 17 }, "n", "n must be <= 16"],
      [{ model: ID, messages: [{ role: "user", content: "x" }], stop: ["a", "b", "c", "d", "e"] }, "stop", "stop must NOT have more than 4 items"],
      [{ model: ID, messages: [{ role: "user", content: "x" }], top_logprobs: 2 }, "top_logprobs", "top_logprobs requires logprobs: true"],
      [{ model: ID, messages: [{ role: "user", content: "x" }], tools: [{ type: "function" }] }, "tools", "tools is not supported by this gateway"],
      [{ model: ID, messages: [{ role: "user", content: [{ type: "image_url", text: "x" }] }] }, "messages[0].content[0].type", "messages[0].content[0].type must be equal to constant"],
      [{ model: ID, messages: [{ role: "user", content: "x" }], max_tokens: 600 }, "max_tokens", "max_tokens 600 and a prompt of 4 tokens make 604, over the model's context of 512"],
    ];
    for (const [body, param, message] of cases) {
      const r = await post(gateway.url, "/v1/chat/completions", body);
      expect({ status: r.status, json: r.json }).toEqual({ status: 400, json: { error: { message, type: "invalid_request_error", param, code: expect.any(String) } } });
    }
    const prompt = await post(gateway.url, "/v1/completions", { model: ID, prompt: [1, 5000] });
    expect([prompt.status, (prompt.json.error as { param: string }).param]).toEqual([400, "prompt[1]"]);
    const json = await post(gateway.url, "/v1/completions", "{not json");
    expect(json.status).toBe(400);
    const unknownPath = await post(gateway.url, "/v1/embeddings", { model: ID });
    expect([unknownPath.status, (unknownPath.json.error as { code: string }).code]).toEqual([404, "unknown_url"]);
  });

  it("answers plain HTTP too: SSE lines end with data: [DONE]", async () => {
    const r = await fetch(`${gateway.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: ID, prompt: "In the beginning", max_tokens: 3, temperature: 0, stream: true }),
    });
    expect([r.status, r.headers.get("content-type")]).toEqual([200, "text/event-stream; charset=utf-8"]);
    const events = (await r.text()).split("\n\n").filter((e) => e !== "");
    expect(events.every((e) => e.startsWith("data: "))).toBe(true);
    expect(events.at(-1)).toBe("data: [DONE]");
    const models = await fetch(`${gateway.url}/v1/models`);
    expect(await models.json()).toEqual({ object: "list", data: [{ id: ID, object: "model", created: expect.any(Number), owned_by: "efed" }] });
  });
});

describe("gateway limits and unavailable routes", () => {
  it("refuses a request over the sequence limit with 429 and Retry-After, and a body over the size limit with 413", async () => {
    const gateway = await startGateway(inProcess, { maxActiveSequences: 2, bodyLimitBytes: 2048 });
    try {
      const big = await post(gateway.url, "/v1/chat/completions", { model: ID, messages: [{ role: "user", content: "x".repeat(3000) }] });
      expect([big.status, (big.json.error as { code: string }).code]).toEqual([413, "body_too_large"]);
      const r = await post(gateway.url, "/v1/chat/completions", { model: ID, messages: [{ role: "user", content: "x" }], n: 3, max_tokens: 2 });
      expect([r.status, r.headers.get("retry-after"), (r.json.error as { code: string }).code]).toEqual([429, "1", "too_many_sequences"]);
      const ok = await post(gateway.url, "/v1/chat/completions", { model: ID, messages: [{ role: "user", content: "x" }], n: 2, max_tokens: 2 });
      expect(ok.status).toBe(200);
    } finally {
      await gateway.close();
    }
  });

  it("a wallet's spending limit reached mid-request: over the query's limit a 400 naming max_tokens, over the day's a 429 until the next UTC day, not a route failure", async () => {
    const overQuery = new WalletError("WALLET_SPENDING_LIMIT", "the next step costs 0.002 EFED: the query would cost 0.012, over its limit of 0.01", { limit: "query" });
    const overDay = new WalletError("WALLET_SPENDING_LIMIT", "the next step costs 0.002 EFED: 2026-12-02's spending would be 10.001, over the daily limit of 10.0", { limit: "day", day: "2026-12-02" });
    let limit: WalletError = overQuery;
    let steps = 0;
    const paying: OpenedLayers = {
      servers: ["in-process"],
      close: async () => {},
      pipeline: {
        openSequence: async () => {
          const inner = await local.openSequence();
          return { compute: async (h) => (++steps % 3 === 0 ? Promise.reject(limit) : inner.compute(h)), close: () => inner.close() };
        },
      },
    };
    const gateway = await startGateway(() => Promise.resolve(paying));
    const ask = () => post(gateway.url, "/v1/chat/completions", { model: ID, messages: [{ role: "user", content: "x" }], max_tokens: 4 });
    try {
      const query = await ask();
      expect([query.status, query.headers.get("retry-after"), query.json]).toEqual([
        400,
        null,
        { error: { message: `${overQuery.message} (ask for fewer tokens)`, type: "invalid_request_error", param: "max_tokens", code: "query_spending_limit" } },
      ]);
      limit = overDay;
      const untilTomorrowS = (at: number): number => {
        const d = new Date(at);
        return Math.ceil((Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1) - at) / 1000);
      };
      const before = untilTomorrowS(Date.now());
      const day = await ask();
      const after = untilTomorrowS(Date.now());
      expect([day.status, day.json]).toEqual([429, { error: { message: overDay.message, type: "rate_limit_error", param: null, code: "spending_limit" } }]);
      // the seconds left of the UTC day when the gateway answered: between those before and after the request
      const retryAfter = Number(day.headers.get("retry-after"));
      expect(retryAfter >= Math.min(before, after) && retryAfter <= Math.max(before, after)).toBe(true);
    } finally {
      await gateway.close();
    }
  });

  it("a model no route covers is not listed, and requests for it get 503 with Retry-After", async () => {
    const shards = await shipped.startShards([[0, 5]]);
    let opened = 0;
    const gateway = await startGateway(async () => {
      opened++;
      const route = await RemotePipeline.connect(shards.urls, 8); // layers 5..8 are missing
      return { pipeline: route, servers: [], close: async () => route.close() };
    });
    try {
      expect(await (await fetch(`${gateway.url}/v1/models`)).json()).toEqual({ object: "list", data: [] });
      const r = await post(gateway.url, "/v1/chat/completions", { model: ID, messages: [{ role: "user", content: "x" }] });
      expect([r.status, r.json]).toEqual([
        503,
        { error: { message: `no route covers the layers of '${ID}' now: the route ends at layer 5, the model has 8`, type: "service_unavailable", param: "model", code: "no_route" } },
      ]);
      expect(Number(r.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(Number(r.headers.get("retry-after"))).toBeLessThanOrEqual(7);
      expect(opened).toBe(1); // tries are spaced by Retry-After
      const retrieve = await fetch(`${gateway.url}/v1/models/${ID}`);
      expect(retrieve.status).toBe(503);
    } finally {
      await gateway.close();
      await shards.stop();
    }
  });
});

describe("gateway, layers on a route of two shard servers", () => {
  let shards: ShardServers | undefined;
  let gateway: Running;
  commonChecks(
    async () => {
      shards = await shipped.startShards([[0, 3], [3, 8]]);
      const { urls } = shards;
      gateway = await startGateway(async () => {
        const route = await RemotePipeline.connect(urls, 8);
        return { pipeline: route, servers: urls, close: async () => route.close() };
      });
      return { gateway, servers: urls };
    },
    async () => {
      await gateway.close();
      await shards?.stop();
    },
  );

  it("names the route's sessions of a request in x-efed-sessions", async () => {
    const { response } = await gateway.client.chat.completions.create({ model: ID, messages: [{ role: "user", content: QUESTION }], max_tokens: 2, temperature: 0, n: 2 }).withResponse();
    const named = response.headers.get("x-efed-sessions")!.split(", ");
    expect(named.length).toBe(4); // two choices, a session on each of two servers
    expect(new Set(named).size).toBe(4);
    expect(named.every((s) => /^0x[0-9a-f]{64}$/.test(s))).toBe(true);
  });
});

describe("gateSteps", () => {
  it("runs at most maxSteps steps at once, first come first served, and every step completes", async () => {
    let running = 0;
    let most = 0;
    const pending: (() => void)[] = [];
    const order: number[] = [];
    const fake: LayerPipeline = {
      openSequence: () =>
        Promise.resolve({
          compute: async (hidden: Float32Array) => {
            running++;
            most = Math.max(most, running);
            order.push(hidden[0]!);
            await new Promise<void>((resolve) => pending.push(resolve));
            running--;
            return hidden.map((x) => x * 2);
          },
          close: () => Promise.resolve(),
        }),
    };
    const gated = gateSteps(fake, 2);
    const sequences = await Promise.all([0, 1, 2, 3, 4].map(() => gated.openSequence()));
    const results = sequences.map((s, i) => s.compute(Float32Array.of(i)));
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      expect(running).toBe(Math.min(2, 5 - i));
      pending.shift()!();
    }
    expect((await Promise.all(results)).map((r) => r[0])).toEqual([0, 2, 4, 6, 8]);
    expect([most, order]).toEqual([2, [0, 1, 2, 3, 4]]);
    expect(() => gateSteps(fake, 0)).toThrow("max steps in flight must be an integer >= 1, got 0");
  });
});
