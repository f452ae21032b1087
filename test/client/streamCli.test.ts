import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { TextTokenizer } from "../../engine/model/tokenizer.js";
import { Head } from "../../engine/runtime/head.js";
import { generate } from "../../client/generate.js";
import { LocalPipeline } from "../../client/localPipeline.js";
import { scratchDir } from "../engine/helpers.js";
import { startServer, type RunningServer } from "../node/support.js";
import { runEfed } from "../support/efedProcess.js";
import { KJV } from "./support/shippedModel.js";

const PROMPT = "In the beginning";
const scratch = scratchDir();
let expectedIds: number[];
let promptIds: number[];
let tokenizer: TextTokenizer;

beforeAll(async () => {
  const model = ModelDirectory.open(KJV);
  tokenizer = TextTokenizer.load(KJV);
  promptIds = tokenizer.encode(PROMPT);
  const head = await Head.load(model);
  const local = await LocalPipeline.load(model);
  expectedIds = (await generate(head, local, promptIds, { maxTokens: 12, temperature: 0, stopTokens: [2] })).generatedIds;
  await Promise.all([head.release(), local.release()]);
  model.close();
});
afterAll(() => scratch.cleanup());

const args = ["generate", "--model", KJV, "--prompt", PROMPT, "--max-tokens", "12"];

interface Summary {
  promptIds: number[];
  generatedIds: number[];
  text: string;
  finish: string;
  timing: { firstTokenMs: number; totalMs: number; decodeTokensPerSecond: number };
  servers?: string[];
  receipts?: number;
}

function expectSummary(s: Summary): void {
  expect([s.promptIds, s.generatedIds, s.text, s.finish]).toEqual([promptIds, expectedIds, tokenizer.decode(expectedIds), "length"]);
  expect(Object.keys(s.timing).sort()).toEqual(["decodeTokensPerSecond", "firstTokenMs", "totalMs"]);
  expect(Object.values(s.timing).every((v) => typeof v === "number")).toBe(true);
}

describe("efed generate output", () => {
  it("prints the text as it streams, then a newline", async () => {
    expect(expectedIds.length).toBe(12);
    const r = await runEfed(...args);
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: `${tokenizer.decode(expectedIds)}\n` });
  });

  it("--jsonl: one token event per token, whose texts make the text, then a done event", async () => {
    const r = await runEfed(...args, "--jsonl");
    expect(r.code).toBe(0);
    const events = r.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.length).toBe(13);
    const tokens = events.slice(0, 12);
    expect(tokens.map((e) => [e.event, e.index, e.id])).toEqual(expectedIds.map((id, i) => ["token", i, id]));
    expect(tokens.map((e) => e.text).join("")).toBe(tokenizer.decode(expectedIds));
    const done = events[12] as unknown as Summary & { event: string };
    expect(done.event).toBe("done");
    expectSummary(done);
  });

  it("--json: one object at the end with timing; --json and --jsonl together are refused", async () => {
    const r = await runEfed(...args, "--json");
    expect(r.code).toBe(0);
    expect(r.stdout.trimEnd().split("\n").length).toBe(1);
    const s = JSON.parse(r.stdout) as Summary;
    expectSummary(s);
    expect("servers" in s || "receipts" in s).toBe(false);
    const both = await runEfed(...args, "--json", "--jsonl");
    expect(both.code).toBe(1);
    expect(both.stderr).toContain("option '--json' cannot be used with option '--jsonl'");
  });

  it("--json over a route names the servers and counts the receipts", async () => {
    const model = ModelDirectory.open(KJV);
    const servers: RunningServer[] = [];
    try {
      servers.push(await startServer(model, 0, 5, scratch.dir), await startServer(model, 5, 8, scratch.dir));
      const urls = servers.map((s) => s.server.url);
      const r = await runEfed(...args, "--json", "--route", urls.join(","));
      expect(r.code).toBe(0);
      const s = JSON.parse(r.stdout) as Summary;
      expectSummary(s);
      expect([s.servers, s.receipts]).toEqual([urls, 12 * 2]);
    } finally {
      for (const s of servers) await s.stop();
      model.close();
    }
  });
});
