/**
 * npm run bench:network — what serving a model over a route of shard servers costs, for the
 * shipped model and a SmolLM2-135M-shaped model with random weights:
 *
 *   1. decode speed in one process (LocalPipeline), the baseline measured in this same run;
 *   2. decode speed through routes of 1, 2 and 4 `efed server` child processes on loopback
 *      (client = RemotePipeline + Head in this process, fp32 on the wire), as a share of the baseline,
 *      with the client relaying every hop and, for 2 and 4 servers, with the servers forwarding;
 *   3. the latency each hop adds: (median route step − median single-process step) ÷ hops;
 *   4. bytes on the wire per decode token per hop for fp32/fp16/int8, counted on the TCP stream by a
 *      relay that parses the WebSocket frames, and the token agreement of fp16/int8 with fp32
 *      (greedy, teacher-forced on the fp32 route's tokens) on the shipped model;
 *   5. total tokens/s with 1, 4 and 8 concurrent sessions through a 2-server route (forwarded);
 *   6. relayed against forwarded steps over simulated wide-area links (a delaying relay in front of
 *      every server, which the client and the forwarding servers both go through; shipped model).
 *
 * Baseline and routes are measured in interleaved rounds (the machine is noisy) and compared by
 * medians. `--parts hop,cpu,bytes,agreement,concurrency,wan` measures only those, `--models
 * shipped,smollm2` only on those (default: all): `--parts hop,cpu --models shipped` is the quick look
 * at what a hop costs. With --write (a complete run only),
 * replaces the "Network" section of docs/benchmarks.md. Every server process is killed at the end,
 * also on error or Ctrl-C. The measurements live in scripts/bench/network/.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { PUBLIC_SHAPES } from "../../engine/model/randomModel.js";
import { TextTokenizer } from "../../engine/model/tokenizer.js";
import { ensureGenerated } from "./lib/benchModels.js";
import { WRITE_DOCS, writeDocSections } from "./lib/docs.js";
import { startEcho, stopAll, stopServers } from "./lib/networkServers.js";
import { hopCpu } from "./network/hopCpu.js";
import { benchModel } from "./network/measure.js";
import { report } from "./network/report.js";
import { PARTS, type HopCpu, type ModelResult, type Plan } from "./network/types.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const SHIPPED_DIR = join(root, "models", "kjv-llama-6m");

const KJV_PROMPTS = [
  "In the beginning God created the heaven and the earth.",
  "And God said, Let there be light:",
  "The LORD is my shepherd; I shall not want.",
  "And it came to pass in those days,",
  "Blessed are the poor in spirit:",
  "Then said Jesus unto them,",
  "And Moses spake unto the children of Israel, saying,",
  "For God so loved the world,",
];


/** A model's result with nothing measured on routes. */
function unmeasured(plan: Plan): ModelResult {
  const model = ModelDirectory.open(plan.dir);
  try {
    const { hiddenSize, numLayers } = model.config;
    return { plan, hiddenSize, layers: numLayers, splits: {}, speed: [], echoMs: 0, bytes: [], concurrency: [], agreement: [], wan: [], fp32RouteExact: true, startSeconds: 0 };
  } finally {
    model.close();
  }
}

/** A precondition of the benchmark is not met: reported as one line, without a stack. */
class SetupError extends Error {}

const MODELS = ["shipped", "smollm2"] as const;

/** The names given by `--flag a,b` out of `known` (all when the flag is absent); refuses an unknown one, naming it. */
function selected<T extends string>(argv: readonly string[], flag: string, known: readonly T[]): Set<T> {
  const i = argv.indexOf(flag);
  if (i === -1) return new Set(known);
  const value = argv[i + 1];
  if (value === undefined || value.startsWith("--")) throw new SetupError(`${flag} needs a comma-separated list of ${known.join(", ")}`);
  const names = new Set<T>();
  for (const name of value.split(",")) {
    if (!(known as readonly string[]).includes(name)) throw new SetupError(`${flag}: unknown name "${name}" (known: ${known.join(", ")})`);
    names.add(name as T);
  }
  return names;
}

async function main(): Promise<void> {
  const parts = selected(process.argv, "--parts", PARTS);
  const models = selected(process.argv, "--models", MODELS);
  if (WRITE_DOCS && (parts.size !== PARTS.length || models.size !== MODELS.length)) {
    throw new SetupError("--write records a complete run only: drop --parts and --models");
  }
  if (!existsSync(join(SHIPPED_DIR, "model.safetensors"))) {
    throw new SetupError(
      `the shipped model is missing: ${SHIPPED_DIR}/model.safetensors does not exist. ` +
        "Train and export it first (scripts/model/), or check out the commit that ships it.",
    );
  }
  const tokenizer = TextTokenizer.load(SHIPPED_DIR);
  const smolDir = models.has("smollm2") ? ensureGenerated("smollm2-135m") : "";
  const smolVocab = PUBLIC_SHAPES["smollm2-135m"]!.vocab_size as number;
  const allPlans: Plan[] = [
    {
      label: "kjv-llama-6m (shipped, trained)",
      dir: SHIPPED_DIR,
      decodeTokens: 64,
      rounds: 5,
      concurrentTokens: 64,
      concurrentReps: 7,
      prompts: KJV_PROMPTS.map((p) => tokenizer.encode(p)),
      agreement: true,
    },
    {
      label: "SmolLM2-135M shape (random)",
      dir: smolDir,
      decodeTokens: 32,
      rounds: 4,
      concurrentTokens: 32,
      concurrentReps: 2,
      prompts: Array.from({ length: 8 }, (_, p) => Array.from({ length: 12 }, (_, i) => (1 + p * 977 + i * 7919) % smolVocab)),
      agreement: false,
    },
  ];
  const plans = allPlans.filter((_, i) => models.has(MODELS[i]!));

  const loadStart = loadavg();
  const t0 = performance.now();
  const storeDir = mkdtempSync(join(tmpdir(), "efed-bench-network-"));
  const removeStores = (): void => rmSync(storeDir, { recursive: true, force: true });
  process.once("exit", removeStores); // also after Ctrl-C, when the finally below does not run
  try {
    const results: ModelResult[] = [];
    if ([...parts].some((p) => p !== "cpu")) {
      const echo = await startEcho(root);
      for (const plan of plans) results.push(await benchModel(plan, storeDir, echo.url, parts));
      await stopServers([echo]);
    } else {
      for (const plan of plans) results.push(unmeasured(plan)); // the CPU part needs only each model's shape
    }
    const hop = new Map<number, HopCpu>();
    if (parts.has("cpu")) for (const r of results) if (!hop.has(r.hiddenSize)) hop.set(r.hiddenSize, await hopCpu(r.hiddenSize, storeDir));
    const table = report(results, hop, { seconds: (performance.now() - t0) / 1000, loadStart, loadEnd: loadavg() }, parts);
    console.log(table);
    writeDocSections(join(root, "docs", "benchmarks.md"), "Benchmarks", { "Network (npm run bench:network)": table });
  } finally {
    await stopAll();
    removeStores();
  }
}

await main().catch((err: unknown) => {
  console.error(err instanceof SetupError ? `bench:network: ${err.message}` : err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exitCode = 1;
});
