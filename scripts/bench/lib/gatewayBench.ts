/**
 * What the OpenAI-compatible gateway costs and how it scales, measured in one run against the
 * library it wraps: (1) overhead per request — the same chat request through HTTP (templating,
 * tokenizing, validation, JSON or SSE) against `generate()` called directly on the same head and
 * layers, alternating, medians of the paired differences; (2) tokens/s of 1, 4 and 16 concurrent
 * streamed requests against one stream (requests share the layers' connections, the servers batch
 * their decode steps, and a BatchingHead batches their logits).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ModelDirectory } from "../../../engine/model/modelDir.js";
import { TextTokenizer } from "../../../engine/model/tokenizer.js";
import { Head } from "../../../engine/runtime/head.js";
import { BatchingHead } from "../../../client/batchingHead.js";
import { ChatTemplate } from "../../../client/chat/template.js";
import { generate } from "../../../client/generate.js";
import { GatewayModel, type OpenedLayers } from "../../../client/gateway/models.js";
import { buildGateway } from "../../../client/gateway/server.js";
import { LocalPipeline } from "../../../client/localPipeline.js";
import { RemotePipeline } from "../../../client/remotePipeline.js";
import { REPO_ROOT } from "./benchModels.js";
import { fmtNum, markdownTable } from "./markdown.js";
import { startServer, stopServers, type RunningServer } from "./networkServers.js";
import { median } from "./stats.js";

export const GATEWAY_OVERHEAD_HEADER = ["layers", "request", "tokens", "library (ms)", "gateway (ms)", "overhead per request (ms)"];
export const GATEWAY_STREAMS_HEADER = ["layers", "concurrent streams", "tokens each", "tokens/s (all streams)", "vs one stream"];

export interface GatewayBenchOptions {
  modelDir: string;
  /** The layers measured (default: all in this process, one shard). */
  openLayers?: (model: ModelDirectory) => Promise<OpenedLayers>;
  /** The first column of every row (default "in-process"). */
  label?: string;
  /** Request pairs (library, gateway) per overhead row (default 20). */
  overheadPairs?: number;
  /** Tokens generated per overhead request (default 8). */
  overheadTokens?: number;
  /** Tokens per stream in the concurrency rows (default 64). */
  streamTokens?: number;
  /** Concurrent streams per row (default 1, 4, 16). */
  concurrency?: readonly number[];
  /** Runs per concurrency row, median taken (default 3). */
  repeats?: number;
}

export interface GatewayBenchResult {
  overhead: string[][];
  streams: string[][];
}

const MESSAGES = ["And God said", "The LORD is my shepherd", "Blessed are the meek", "In the beginning"];

export async function measureGateway(options: GatewayBenchOptions): Promise<GatewayBenchResult> {
  const label = options.label ?? "in-process";
  const pairs = options.overheadPairs ?? 20;
  const overheadTokens = options.overheadTokens ?? 8;
  const streamTokens = options.streamTokens ?? 64;
  const model = ModelDirectory.open(options.modelDir);
  const head = await Head.load(model, { threads: 1 });
  const batching = new BatchingHead(head);
  const tokenizer = TextTokenizer.load(options.modelDir);
  const template = ChatTemplate.forModel(options.modelDir);
  const layers = await (options.openLayers ?? inProcess)(model);
  const served = new GatewayModel({
    id: "bench",
    head: batching,
    tokenizer,
    template,
    eosTokenIds: [], // every request runs its full length: equal work on both sides
    openLayers: async () => ({ ...layers, close: async () => {} }),
  });
  const app = buildGateway({ models: [served], maxActiveSequences: 1024 });
  try {
    const url = await app.listen({ port: 0, host: "127.0.0.1" });
    const body = (content: string, maxTokens: number, stream: boolean): string =>
      JSON.stringify({ model: "bench", messages: [{ role: "user", content }], max_tokens: maxTokens, temperature: 0, stream });
    const viaHttp = async (content: string, maxTokens: number, stream: boolean): Promise<void> => {
      const r = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: body(content, maxTokens, stream) });
      const text = await r.text();
      if (r.status !== 200 || (stream && !text.endsWith("data: [DONE]\n\n"))) throw new Error(`the gateway answered ${r.status}: ${text.slice(-600)}`);
    };
    const promptOf = (content: string): number[] => tokenizer.encode(template.render([{ role: "user", content }], true), { addSpecialTokens: false });
    const direct = (content: string, maxTokens: number): Promise<unknown> => generate(batching, layers.pipeline, promptOf(content), { maxTokens, temperature: 0 });

    await viaHttp(MESSAGES[0]!, 2, false); // warm-up: first-run costs are not the gateway's
    await direct(MESSAGES[0]!, 2);
    const overhead: string[][] = [];
    for (const stream of [false, true]) {
      const lib: number[] = [];
      const gw: number[] = [];
      for (let i = 0; i < pairs; i++) {
        const content = MESSAGES[i % MESSAGES.length]!;
        let t = performance.now();
        await direct(content, overheadTokens);
        lib.push(performance.now() - t);
        t = performance.now();
        await viaHttp(content, overheadTokens, stream);
        gw.push(performance.now() - t);
      }
      const diff = median(gw.map((g, i) => g - lib[i]!));
      overhead.push([label, stream ? "chat, streamed (SSE)" : "chat, one JSON answer", String(overheadTokens), fmtNum(median(lib), 2), fmtNum(median(gw), 2), fmtNum(diff, 2)]);
    }

    const streams: string[][] = [];
    let single = 0;
    for (const c of options.concurrency ?? [1, 4, 16]) {
      const rates: number[] = [];
      try {
        for (let r = 0; r < (options.repeats ?? 3); r++) {
          const t = performance.now();
          await Promise.all(Array.from({ length: c }, (_, i) => viaHttp(MESSAGES[i % MESSAGES.length]!, streamTokens, true)));
          rates.push((c * streamTokens * 1000) / (performance.now() - t));
        }
      } catch (err) {
        // a level that fails is a result too: the row says why, the other levels still run
        streams.push([label, String(c), String(streamTokens), `failed: ${(err as Error).message.slice(0, 200)}`, "—"]);
        continue;
      }
      const rate = median(rates);
      if (c === 1) single = rate;
      streams.push([label, String(c), String(streamTokens), fmtNum(rate, 1), single > 0 ? `${(rate / single).toFixed(2)}×` : "—"]);
    }
    return { overhead, streams };
  } finally {
    await app.close();
    await layers.close();
    await head.release();
    model.close();
  }
}

async function inProcess(model: ModelDirectory): Promise<OpenedLayers> {
  const local = await LocalPipeline.load(model);
  return { pipeline: local, servers: ["in-process"], close: () => local.release() };
}

/** The shipped model, the one the gateway numbers are measured on. */
export const SHIPPED_MODEL = join(import.meta.dirname, "..", "..", "..", "models", "kjv-llama-6m");

/**
 * The "Gateway" section of docs/client.md: the measurements with the layers in this process, then
 * on a route of two `efed server` processes (shipped model), as markdown tables.
 */
export async function benchGateway(): Promise<{ heading: string; body: string }> {
  const overhead: string[][] = [];
  const streams: string[][] = [];
  const local = await measureGateway({ modelDir: SHIPPED_MODEL });
  overhead.push(...local.overhead);
  streams.push(...local.streams);
  // the servers' key files go to a scratch directory, not into the checkout (they inherit the environment)
  const storeDir = mkdtempSync(join(tmpdir(), "efed-gwbench-"));
  const previousDataDir = process.env.EFED_DATA_DIR;
  process.env.EFED_DATA_DIR = storeDir;
  let servers: RunningServer[] = [];
  try {
    servers = [await startServer(REPO_ROOT, SHIPPED_MODEL, 0, 4, storeDir), await startServer(REPO_ROOT, SHIPPED_MODEL, 4, 8, storeDir)];
    const urls = servers.map((s) => s.url);
    const route = await measureGateway({
      modelDir: SHIPPED_MODEL,
      label: "route of 2 servers",
      openLayers: async (model) => {
        const pipeline = await RemotePipeline.connect(urls, model.config.numLayers);
        return { pipeline, servers: urls, close: async () => pipeline.close() };
      },
    });
    overhead.push(...route.overhead);
    streams.push(...route.streams);
  } finally {
    await stopServers(servers);
    if (previousDataDir === undefined) delete process.env.EFED_DATA_DIR;
    else process.env.EFED_DATA_DIR = previousDataDir;
    rmSync(storeDir, { recursive: true, force: true });
  }
  const body = [
    "The same chat request through the gateway (HTTP, validation, templating, JSON or SSE) against `generate()` called",
    "directly on the same head and layers, alternating; medians of the paired differences. Then 1, 4 and 16 concurrent",
    "streamed requests sharing the layers' connections (the servers batch their decode steps, a BatchingHead batches the",
    "logits) against one stream. Shipped model, greedy.",
    "",
    markdownTable(GATEWAY_OVERHEAD_HEADER, overhead, ["left", "left", "right", "right", "right", "right"]),
    "",
    markdownTable(GATEWAY_STREAMS_HEADER, streams, ["left", "right", "right", "right", "right"]),
  ].join("\n");
  return { heading: "Gateway", body };
}
