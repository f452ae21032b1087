/**
 * npm run bench:memory — whether a model too big for one modest machine's share serves as shards
 * within theirs: a TinyLlama-1.1B-shaped model (random weights, BF16 on disk, float32 in the graphs)
 * split over 4 `efed server` processes, started one after another on this machine. Per server: the
 * weight bytes its graphs hold, its start time (spawn → listening: key, the manifest check of its
 * tensors, graph build, ONNX Runtime load) per GB, and its peak RSS when it starts listening and
 * after serving, against those weights. Then decode through the route (forwarded, fp32) against the
 * same model in one process (measured first, alone, in its own process), greedy tokens compared.
 * With --write, replaces the "Memory" section of docs/benchmarks.md.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { readManifest } from "../../engine/model/manifest.js";
import { layerPrefix } from "../../engine/model/weights.js";
import { Head } from "../../engine/runtime/head.js";
import { REPO_ROOT, ensureGenerated } from "./lib/benchModels.js";
import { writeDocSections } from "./lib/docs.js";
import { fmtNum, markdownTable } from "./lib/markdown.js";
import { evenSplit, startServer, stopAll, type RunningServer } from "./lib/networkServers.js";
import { modelCommandEnv, modelCommandFlags } from "./lib/modelCommandEnv.js";
import { memoryOf } from "./lib/procMemory.js";
import { median } from "./lib/stats.js";
import { connect, decodeRun } from "./network/decode.js";

const SHAPE = "tinyllama-1.1b";
const SHARDS = 4;
const PROMPT_TOKENS = 16;
const DECODE_TOKENS = 24;
const ROUNDS = 3;
/** The goal of issue 13: a server's peak RSS at most this many times the weights it serves. */
const RSS_GOAL = 1.2;
const MB = 1e6;
const GB = 1e9;

interface Reference {
  tokens: number[];
  stepMs: number;
  loadSeconds: number;
  loadPeakRssBytes: number;
  peakRssBytes: number;
}

interface ServerRow {
  first: number;
  last: number;
  weightBytes: number;
  startSeconds: number;
  listeningPeak: number;
  servingPeak: number;
  servingRss: number;
}

/** Float32 bytes the graphs of layers first..last hold: a dense model's tensors, widened to 4 bytes each. */
function denseLayerBytes(dir: string, first: number, last: number): number {
  const manifest = readManifest(dir);
  if (manifest === undefined) throw new Error(`${dir} has no manifest`);
  if (manifest.compression.method !== "none") throw new Error(`${dir} is compressed (${String(manifest.compression.method)}): this benchmark sizes dense models`);
  let elements = 0;
  for (let l = first; l < last; l++) {
    const prefix = layerPrefix(l);
    for (const [name, t] of Object.entries(manifest.tensors)) if (name.startsWith(prefix)) elements += t.shape.reduce((a, d) => a * d, 1);
  }
  return 4 * elements;
}

function reference(dir: string, prompt: readonly number[]): Reference {
  const out = execFileSync(
    process.execPath,
    [...modelCommandFlags(), "--import", "tsx", join(REPO_ROOT, "scripts/bench/memory-worker.ts"), dir, prompt.join(","), String(DECODE_TOKENS)],
    { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 20, env: modelCommandEnv() },
  );
  return JSON.parse(out.trim().split("\n").pop()!) as Reference;
}

async function main(): Promise<void> {
  const loadStart = loadavg();
  const t0 = performance.now();
  const dir = ensureGenerated(SHAPE);
  const model = ModelDirectory.open(dir);
  const c = model.config;
  const prompt = Array.from({ length: PROMPT_TOKENS }, (_, i) => (1 + i * 7919) % c.vocabSize);

  console.error(`single process: all ${c.numLayers} layers and the head …`);
  const ref = reference(dir, prompt);
  console.error(`  ${ref.stepMs.toFixed(1)} ms per step, load ${ref.loadSeconds.toFixed(1)} s, peak RSS ${(ref.peakRssBytes / MB).toFixed(0)} MB`);

  const storeDir = mkdtempSync(join(tmpdir(), "efed-bench-memory-"));
  const servers: RunningServer[] = [];
  const rows: ServerRow[] = [];
  try {
    for (const [first, last] of evenSplit(c.numLayers, SHARDS)) {
      const started = performance.now();
      const s = await startServer(REPO_ROOT, dir, first, last, storeDir);
      const startSeconds = (performance.now() - started) / 1000;
      servers.push(s);
      const weightBytes = denseLayerBytes(dir, first, last);
      rows.push({ first, last, weightBytes, startSeconds, listeningPeak: memoryOf(s.child.pid!).peak, servingPeak: 0, servingRss: 0 });
      console.error(`  server ${first}:${last} listening after ${startSeconds.toFixed(1)} s, peak RSS ${(rows.at(-1)!.listeningPeak / MB).toFixed(0)} MB`);
    }
    const head = await Head.load(model, { threads: 1 });
    const route = await connect(servers, c.numLayers, "fp32", true);
    const stepMs: number[] = [];
    let tokens: number[] = [];
    try {
      await decodeRun(head, route, prompt, 2); // warm-up: opens the servers' links to each other
      for (let r = 0; r < ROUNDS; r++) {
        const run = await decodeRun(head, route, prompt, DECODE_TOKENS);
        stepMs.push(...run.stepMs);
        if (r === 0) tokens = run.tokens;
        else if (run.tokens.join() !== tokens.join()) throw new Error(`round ${r + 1} of the route gave other greedy tokens than round 1`);
        console.error(`  route round ${r + 1}/${ROUNDS}: ${median(run.stepMs).toFixed(1)} ms per step`);
      }
    } finally {
      await route.close();
    }
    const clientRss = memoryOf(process.pid).rss;
    await head.release();
    servers.forEach((s, i) => {
      const m = memoryOf(s.child.pid!);
      rows[i]!.servingPeak = m.peak;
      rows[i]!.servingRss = m.rss;
    });
    await stopAll();

    const alike = tokens.filter((t, i) => ref.tokens[i] === t).length;
    const routeStepMs = median(stepMs);
    const totalWeights = rows.reduce((a, r) => a + r.weightBytes, 0);
    const ratio = (bytes: number, weights: number): string => {
      const x = bytes / weights;
      return `**${x.toFixed(2)}×**${x <= RSS_GOAL ? "" : " (missed)"}`;
    };
    const serverTable = markdownTable(
      ["server", "layers", "weights in its graphs MB", "start s", "start s per GB", "peak RSS listening MB", "÷ weights", `peak RSS after serving MB`, `÷ weights (goal ≤ ${RSS_GOAL})`, "RSS after serving MB"],
      rows.map((r, i) => [
        `${i + 1} of ${SHARDS}`,
        `${r.first}:${r.last}`,
        fmtNum(r.weightBytes / MB, 0),
        r.startSeconds.toFixed(1),
        (r.startSeconds / (r.weightBytes / GB)).toFixed(1),
        fmtNum(r.listeningPeak / MB, 0),
        ratio(r.listeningPeak, r.weightBytes),
        fmtNum(r.servingPeak / MB, 0),
        ratio(r.servingPeak, r.weightBytes),
        fmtNum(r.servingRss / MB, 0),
      ]),
      ["left", "left", "right", "right", "right", "right", "right", "right", "right", "right"],
    );
    const speedTable = markdownTable(
      ["served by", "weights MB", "load s", "peak RSS MB", "÷ weights", "median decode step ms", "decode tok/s", "greedy tokens alike"],
      [
        [
          "one process (all layers and the head)",
          fmtNum((totalWeights + headBytes(model)) / MB, 0),
          ref.loadSeconds.toFixed(1),
          fmtNum(ref.peakRssBytes / MB, 0),
          `${(ref.peakRssBytes / (totalWeights + headBytes(model))).toFixed(2)}×`,
          ref.stepMs.toFixed(1),
          (1000 / ref.stepMs).toFixed(1),
          "—",
        ],
        [
          `${SHARDS} \`efed server\`s, forwarded (client: embedding and head, RSS ${fmtNum(clientRss / MB, 0)} MB)`,
          fmtNum(totalWeights / MB, 0),
          rows.reduce((a, r) => a + r.startSeconds, 0).toFixed(1),
          fmtNum(rows.reduce((a, r) => a + r.servingPeak, 0) / MB, 0),
          `${(rows.reduce((a, r) => a + r.servingPeak, 0) / totalWeights).toFixed(2)}×`,
          routeStepMs.toFixed(1),
          (1000 / routeStepMs).toFixed(1),
          `${alike}/${tokens.length}`,
        ],
      ],
      ["left", "right", "right", "right", "right", "right", "right", "right"],
    );
    const loadEnd = loadavg();
    const doc = [
      `Machine: ${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"}, ${(totalmem() / GB).toFixed(1)} GB of memory; load average ` +
        `${loadStart.map((x) => x.toFixed(1)).join(" / ")} at the start, ${loadEnd.map((x) => x.toFixed(1)).join(" / ")} at the end; the run took ${((performance.now() - t0) / 60_000).toFixed(1)} min.`,
      "",
      `A TinyLlama-1.1B-shaped model (random weights, ${c.numLayers} layers, hidden ${c.hiddenSize}, BF16 on disk: ` +
        `${fmtNum(totalWeights / 2 / GB, 2)} GB of layers) served by ${SHARDS} \`efed server\` processes on 127.0.0.1, ` +
        "started one after another (1 intra-op thread each, receipts signed and stored as in production).",
      "",
      serverTable,
      "",
      speedTable,
      "",
      "Weights in its graphs: the float32 bytes of the server's layers (the engine widens BF16 to f32; a decode step reads",
      "each once). Start: from spawning the process to its listening line, which includes Node.js and the TypeScript",
      "loader, hashing the served tensors against the manifest, building each layer's graph and ONNX Runtime loading",
      "and repacking it. Peak RSS is the kernel's high-water mark (VmHWM) when the server starts listening and after",
      `the route has served ${ROUNDS + 1} sequences of ${PROMPT_TOKENS} prompt and up to ${DECODE_TOKENS} decode tokens; it includes the ~100 MB of`,
      "Node.js and ONNX Runtime themselves (their code alone is ~75 MB of it), the server's SQLite store and its KV slots.",
      "While loading, ONNX Runtime repacks one weight at a time (its mapped file pages and its packed copy both resident);",
      "graphs list the largest weights first, so the last weight repacked, on top of all the others, is one of the smallest.",
      "Servers run as `bin/efed.mjs` starts them (`bin/modelProcess.mjs`): glibc's malloc on transparent huge pages",
      "(`EFED_HUGEPAGES=0` turns it off) and V8's young generation at 4 MiB per semi-space; the single process gets the same. The single process (in a process",
      "of its own, measured first, alone) holds every layer, the LM head and the final norm (its weights column adds the",
      `LM head); greedy tokens are compared position by position over ${DECODE_TOKENS + 1} tokens; decode times are medians of ${ROUNDS} rounds of ${DECODE_TOKENS} steps.`,
    ].join("\n");
    console.log(doc);
    writeDocSections(join(REPO_ROOT, "docs", "benchmarks.md"), "Benchmarks", { "Memory: a 1.1B model as 4 shards (npm run bench:memory)": doc });
  } finally {
    model.close();
    await stopAll();
    rmSync(storeDir, { recursive: true, force: true });
  }
}

/** Float32 bytes of the LM head and final norm (what one process holds besides the layers). */
function headBytes(model: ModelDirectory): number {
  const c = model.config;
  return 4 * (c.vocabSize * c.hiddenSize + c.hiddenSize);
}

await main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exitCode = 1;
});
