/**
 * npm run bench:batching [-- --route | --route-only] [-- --write] — what batching concurrent sessions' decode steps
 * buys a server, old padded batches against the KV slot pool, in the same run:
 * - engine: for B sequences (each with its own cache of CONTEXT tokens), B separate `Shard.compute`
 *   steps, one `Shard.computeBatch` over caches with their own tensors (copied into a batch padded
 *   to the longest and back) and one over caches in a `KvSlotPool` (read in place, only the new
 *   position appended), at 64 and 256 tokens of context, alternating in one process, medians;
 * - with --route: 1 and 8 concurrent sessions through a 2-server route (`efed server` processes,
 *   forwarded), servers with `--kv-slots 0` (padded batches) and with the default slot pool,
 *   interleaved rounds, medians;
 * - with --route-only: the route part alone (a quick measurement; never written to docs/).
 * With --write, replaces the "Batched decode" section of docs/benchmarks.md.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { BatchingHead } from "../../client/batchingHead.js";
import { generate } from "../../client/generate.js";
import { RemotePipeline } from "../../client/remotePipeline.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { PUBLIC_SHAPES } from "../../engine/model/randomModel.js";
import { Head } from "../../engine/runtime/head.js";
import { Shard, type KvCache } from "../../engine/runtime/shard.js";
import { ensureGenerated, REPO_ROOT } from "./lib/benchModels.js";
import { writeDocSections } from "./lib/docs.js";
import { markdownTable } from "./lib/markdown.js";
import { evenSplit, startServer, stopServers, type RunningServer } from "./lib/networkServers.js";
import { median } from "./lib/stats.js";

const BATCHES = [1, 2, 4, 8];
const CONTEXTS = [64, 256];
const REPS = 7;
const ROUTE_ONLY = process.argv.includes("--route-only");
const ROUTE = ROUTE_ONLY || process.argv.includes("--route");

async function filledCache(shard: Shard, tokens: number, seed: number): Promise<KvCache> {
  const cache = shard.newCache();
  const H = shard.config.hiddenSize;
  await shard.compute(Float32Array.from({ length: tokens * H }, (_, i) => Math.sin(i + seed) * 0.1), cache);
  return cache;
}

/** A cache that shares the filled tensors of `c` (both paths append to their own copy). */
const fork = (c: KvCache): KvCache => ({ length: c.length, keys: [...c.keys], values: [...c.values] });

const ratio = (x: number): string => `${x.toFixed(2)}×`;

async function engineRows(label: string, dir: string): Promise<string[][]> {
  const rows: string[][] = [];
  const model = ModelDirectory.open(dir);
  const shard = await Shard.load(model, 0, model.config.numLayers, { threads: 1 });
  const H = model.config.hiddenSize;
  const hidden = Float32Array.from({ length: H }, (_, i) => Math.cos(i) * 0.1);
  for (const context of CONTEXTS) {
    const Bmax = Math.max(...BATCHES);
    const caches = await Promise.all(Array.from({ length: Bmax }, (_, i) => filledCache(shard, context, i)));
    // the same sequences in a pool (admitting copies each cache in once, outside the timing)
    const pool = shard.slotPool({ maxSlots: Bmax });
    const slotted = await Promise.all(Array.from({ length: Bmax }, (_, i) => filledCache(shard, context, i)));
    for (const c of slotted) pool.admit(c);
    for (const B of BATCHES) {
      const separate: number[] = [];
      const padded: number[] = [];
      const inPlace: number[] = [];
      const hiddens = Array.from({ length: B }, () => hidden);
      for (let rep = 0; rep < REPS; rep++) {
        let t = performance.now();
        for (let b = 0; b < B; b++) await shard.compute(hidden, fork(caches[b]!));
        separate.push(performance.now() - t);
        const forks = caches.slice(0, B).map(fork);
        t = performance.now();
        await shard.computeBatch(hiddens, forks);
        padded.push(performance.now() - t);
        t = performance.now();
        await shard.computeBatch(hiddens, slotted.slice(0, B));
        inPlace.push(performance.now() - t);
        // rewind: the next step overwrites the position this one appended, so every repetition sees CONTEXT tokens
        for (const c of slotted.slice(0, B)) c.length--;
      }
      const [s, p, k] = [median(separate), median(padded), median(inPlace)];
      rows.push([label, String(context), String(B), s.toFixed(1), p.toFixed(1), k.toFixed(1), ((B * 1000) / k).toFixed(0), ratio(s / p), ratio(s / k), ratio(p / k)]);
      console.error(rows[rows.length - 1]!.join(" | "), `(slot capacity ${pool.capacity})`);
    }
  }
  await shard.release();
  model.close();
  return rows;
}

/** 1 and 8 concurrent sessions through a 2-server route, servers with the slot pool off and on, interleaved. */
async function routeRows(label: string, dir: string, prompts: number[][], tokens: number, rounds: number): Promise<string[][]> {
  const model = ModelDirectory.open(dir);
  const L = model.config.numLayers;
  const storeDir = mkdtempSync(join(tmpdir(), "efed-bench-batching-"));
  const configs = [
    { name: "padded batches (--kv-slots 0)", args: ["--kv-slots", "0"] },
    { name: "slot pool (default)", args: [] as string[] },
  ];
  const servers: RunningServer[][] = [];
  const plainHead = await Head.load(model, { threads: 1 });
  try {
    // each server creates a throwaway key in its own data directory under the scratch directory
    for (const [i, c] of configs.entries()) {
      const started = evenSplit(L, 2).map(([f, l]) => startServer(REPO_ROOT, dir, f, l, storeDir, 300_000, [...c.args, "--data-dir", join(storeDir, `server-${i}-${f}`)]));
      servers.push(await Promise.all(started));
    }
    // a fresh connection per measurement: a server closes a connection that holds no session for 30 s
    const run = async (p: number, sessions: number): Promise<number> => {
      const pipe = await RemotePipeline.connect(servers[p]!.map((x) => x.url), L, { encoding: "fp32", maxLength: 512, forward: true });
      // a fresh one per measurement: its gathering waits as long as the last runs were large (an 8-session run's batches would delay a 1-session run)
      const head = new BatchingHead(plainHead);
      try {
        const t = performance.now();
        const results = await Promise.all(
          Array.from({ length: sessions }, (_, i) => generate(head, pipe, prompts[i % prompts.length]!, { maxTokens: tokens, temperature: 0 })),
        );
        return results.reduce((n, r) => n + r.generatedIds.length, 0) / ((performance.now() - t) / 1000);
      } finally {
        pipe.close();
      }
    };
    for (let p = 0; p < configs.length; p++) await run(p, 2); // warm-up
    const tps = configs.map(() => ({ one: [] as number[], eight: [] as number[] }));
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < configs.length; i++) {
        const p = (i + r) % configs.length;
        tps[p]!.one.push(await run(p, 1));
        tps[p]!.eight.push(await run(p, 8));
      }
      console.error(`   round ${r + 1}/${rounds}: ` + configs.map((c, p) => `${c.name} 1: ${median(tps[p]!.one).toFixed(1)}, 8: ${median(tps[p]!.eight).toFixed(1)} tok/s`).join("; "));
    }
    return configs.map((c, p) => {
      const [one, eight] = [median(tps[p]!.one), median(tps[p]!.eight)];
      return [label, c.name, String(prompts[0]!.length), String(tokens), one.toFixed(1), eight.toFixed(1), `**${ratio(eight / one)}**`];
    });
  } finally {
    for (const s of servers) await stopServers(s);
    await plainHead.release();
    rmSync(storeDir, { recursive: true, force: true });
    model.close();
  }
}

const loadStart = loadavg()[0]!;
const models = [
  ["kjv-llama-6m (shipped, trained)", join(REPO_ROOT, "models", "kjv-llama-6m")],
  ["SmolLM2-135M shape (random)", ensureGenerated("smollm2-135m")],
] as const;
const engine: string[][] = [];
if (!ROUTE_ONLY) for (const [label, dir] of models) engine.push(...(await engineRows(label, dir)));
const route: string[][] = [];
if (ROUTE) {
  const vocab = PUBLIC_SHAPES["smollm2-135m"]!.vocab_size as number;
  for (const promptTokens of [12]) { // as bench:network; 200-token prompts of 8 sessions overran the client's 4 s step timeout at load 25
    const prompts = Array.from({ length: 8 }, (_, p) => Array.from({ length: promptTokens }, (_, i) => (1 + p * 977 + i * 7919) % vocab));
    route.push(...(await routeRows(models[1][0], models[1][1], prompts, 32, 2)));
  }
}
const loadEnd = loadavg()[0]!;

const sections = ROUTE_ONLY ? [] : [
  markdownTable(
    ["model", "context tokens", "sequences B", "B separate steps ms", "padded batch ms", "slot batch ms", "slot tok/s", "padded speed-up", "slot speed-up", "slot vs padded"],
    engine,
    ["left", "right", "right", "right", "right", "right", "right", "right", "right", "right"],
  ),
  "",
  `All layers, 1 thread, median of ${REPS} alternating repetitions (load average ${loadStart.toFixed(1)} → ${loadEnd.toFixed(1)} on this shared`,
  "machine: compare the ratios, measured in one run). A batched run reads every weight once for B tokens. The padded",
  "batch copies each sequence's cache into a batch padded to the longest and back (and the fused kernel copies it once",
  "more into its output); the slot batch runs on caches in a `KvSlotPool` (engine/runtime/kvSlots.ts): one buffer per",
  "layer with a row per sequence, handed to ONNX Runtime as the past (no copy); the run fetches only each sequence's",
  "new key and value, which the pool writes at its length. What it still pays per step: the fused kernel copies each",
  "row's valid past into its own present inside ONNX Runtime (a present shared with the past would have to be fetched,",
  "and onnxruntime-node 1.30 copies every fetched output into a fresh JavaScript buffer). Batched and separate steps",
  "give bit-identical outputs on both paths (test/engine/batch.test.ts, test/engine/batchSlots.test.ts).",
];
if (route.length > 0) {
  sections.push(
    ...(ROUTE_ONLY ? [] : [""]),
    markdownTable(["model", "servers", "prompt tokens", "tokens per session", "1 session tok/s", "8 sessions tok/s", "8 vs 1"], route, [
      "left",
      "left",
      "right",
      "right",
      "right",
      "right",
      "right",
    ]),
    "",
    "`--route`: 2 `efed server` processes (half the layers each, forwarded), one client process with a shared LM head",
    "(client/batchingHead.ts) running 1 or 8 concurrent greedy `generate()` calls; both server pairs run at once,",
    "rounds interleaved, median of the rounds. Client and servers share this machine's 2 cores.",
  );
}
const table = sections.join("\n");
console.log(table);
if (ROUTE_ONLY) console.error("(--route-only: docs/ not written, the section needs the engine table too)");
else writeDocSections(join(REPO_ROOT, "docs", "benchmarks.md"), "Benchmarks", { "Batched decode (npm run bench:batching)": table });
