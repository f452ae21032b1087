/**
 * npm run bench:peer — eFed's engine against llama.cpp (node-llama-cpp, pinned) on the same weights,
 * exported by `efed convert`, at every weight format both serve: decode and prefill tokens/s at 1 and
 * 2 threads, peak RSS, and whether the greedy tokens agree. Rounds are interleaved and each number is
 * the median over rounds (this machine is shared: compare ratios within one run).
 * Options: --rounds N (3), --models kjv,smol (both), --write (replace the section in docs/benchmarks.md).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { exportGguf, type ExportType } from "../../node/convert/exportGguf.js";
import type { QuantAccuracyLevel } from "../../engine/model/compression.js";
import { importGguf } from "../../node/convert/importGguf.js";
import { cacheDir, ensureGenerated } from "./lib/benchModels.js";
import { writeDocSections } from "./lib/docs.js";
import { median } from "./lib/stats.js";
import { DECODE, PROMPT, type PeerRun } from "./peer-worker.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const opts = new Command()
  .option("--rounds <n>", "interleaved rounds per configuration", (v) => Number(v), 3)
  .option("--models <list>", "kjv, smol or both", "kjv,smol")
  .option("--write", "write the table into docs/benchmarks.md")
  .parse()
  .opts<{ rounds: number; models: string }>();

const MODELS: Record<string, [label: string, dir: () => string]> = {
  kjv: ["kjv-llama-6m (shipped)", () => join(root, "models", "kjv-llama-6m")],
  smol: ["SmolLM2-135M shape (random)", () => ensureGenerated("smollm2-135m")],
};

/** One row of the table: what eFed serves and the GGUF llama.cpp runs, with the same weights. */
interface Format {
  label: string;
  efedDir: string;
  gguf: string;
}

/**
 * llama.cpp loads no model without a vocabulary; a random-weight model has none, so it gets a
 * synthetic byte-level BPE one (the 256 byte symbols, then placeholders; no merges). Both engines
 * run on token ids, so what the tokens spell does not matter.
 */
function ensureVocabulary(dir: string): void {
  if (existsSync(join(dir, "tokenizer.json"))) return;
  const vocabSize = ModelDirectory.open(dir).config.vocabSize;
  const symbols = byteSymbols();
  const vocab: Record<string, number> = {};
  for (let id = 0; id < vocabSize; id++) vocab[id < 256 ? symbols[id]! : `<extra_${id}>`] = id;
  const byteLevel = { add_prefix_space: false, trim_offsets: true, use_regex: true };
  const tokenizer = {
    version: "1.0", truncation: null, padding: null, added_tokens: [], normalizer: null,
    pre_tokenizer: { type: "ByteLevel", ...byteLevel }, post_processor: null, decoder: { type: "ByteLevel", ...byteLevel },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
}

/** GPT-2's printable stand-ins for the 256 byte values (byte-level BPE's alphabet). */
function byteSymbols(): string[] {
  const printable = (b: number): boolean => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let next = 256;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(printable(b) ? b : next++));
}

/** The model in every format, made once into the bench cache. */
function formatsOf(key: string, dir: string): Format[] {
  const out = join(cacheDir, "peer", key);
  mkdirSync(out, { recursive: true });
  const gguf = (name: string, from: string, type: ExportType): string => {
    const file = join(out, `${name}.gguf`);
    if (!existsSync(file)) exportGguf(from, file, type);
    return file;
  };
  // Quantized as llama.cpp's quantizer does it: every matrix, the LM head at Q8_0 in a Q4_0 file too.
  // eFed runs the import of the very GGUF llama.cpp runs (blocks with F16 scales), so both read the same weights.
  const quantized = (type: "q8_0" | "q4_0", accuracyLevel?: QuantAccuracyLevel): { efedDir: string; gguf: string } => {
    const file = gguf(`${type}-head`, dir, type);
    const efedDir = join(out, `${type}-head-from-gguf${accuracyLevel === undefined ? "" : `-level${accuracyLevel}`}`);
    if (!existsSync(join(efedDir, "model.safetensors"))) importGguf(file, efedDir, { accuracyLevel });
    return { efedDir, gguf: file };
  };
  return [
    { label: "f32 · F32", efedDir: dir, gguf: gguf("f32", dir, "f32") },
    { label: "f32 (16-bit weights widened) · F16", efedDir: dir, gguf: gguf("f16", dir, "f16") },
    { label: "int8 · Q8_0", ...quantized("q8_0") },
    { label: "int4, head int8 · Q4_0, head Q8_0", ...quantized("q4_0") },
    { label: "int4 at level 4, head int8 · Q4_0, head Q8_0", ...quantized("q4_0", 4) },
  ];
}

function run(engine: "efed" | "llama", path: string, threads: number, vocab: number): PeerRun {
  const out = execFileSync(process.execPath, ["--import", "tsx", join(root, "scripts/bench/peer-worker.ts"), engine, path, String(threads), String(vocab)], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  return JSON.parse(out.trim().split("\n").pop()!) as PeerRun;
}

/** Tokens generated alike from the start, out of DECODE. */
function agreement(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  while (n < a.length && a[n] === b[n]) n++;
  return n;
}

const rows: string[] = [];
for (const key of opts.models.split(",")) {
  const entry = MODELS[key];
  if (entry === undefined) throw new Error(`--models: ${key} is not one of ${Object.keys(MODELS).join(", ")}`);
  const [label, dirOf] = entry;
  const dir = dirOf();
  ensureVocabulary(dir);
  const vocab = ModelDirectory.open(dir).config.vocabSize;
  const formats = formatsOf(key, dir);
  const runs = new Map<string, { efed: PeerRun[]; llama: PeerRun[] }>();
  for (let round = 0; round < opts.rounds; round++) {
    for (const f of formats) {
      for (const threads of [1, 2]) {
        const k = `${f.label}|${threads}`;
        const r = runs.get(k) ?? { efed: [], llama: [] };
        r.efed.push(run("efed", f.efedDir, threads, vocab));
        r.llama.push(run("llama", f.gguf, threads, vocab));
        runs.set(k, r);
        console.error(`${label} ${k} round ${round + 1}: efed ${r.efed.at(-1)!.decodeTokensPerSecond.toFixed(1)} vs llama.cpp ${r.llama.at(-1)!.decodeTokensPerSecond.toFixed(1)} decode tok/s`);
      }
    }
  }
  for (const f of formats) {
    for (const threads of [1, 2]) {
      const r = runs.get(`${f.label}|${threads}`)!;
      const m = (xs: PeerRun[], pick: (x: PeerRun) => number): number => median(xs.map(pick));
      const decode = [m(r.efed, (x) => x.decodeTokensPerSecond), m(r.llama, (x) => x.decodeTokensPerSecond)];
      const prefill = [m(r.efed, (x) => x.prefillTokensPerSecond), m(r.llama, (x) => x.prefillTokensPerSecond)];
      const rss = [m(r.efed, (x) => x.peakRssBytes), m(r.llama, (x) => x.peakRssBytes)];
      rows.push(
        `| ${label} | ${f.label} | ${threads} | ${decode[0]!.toFixed(1)} | ${decode[1]!.toFixed(1)} | **${(decode[0]! / decode[1]!).toFixed(2)}** | ` +
          `${prefill[0]!.toFixed(0)} | ${prefill[1]!.toFixed(0)} | ${(prefill[0]! / prefill[1]!).toFixed(2)} | ` +
          `${(rss[0]! / 1e6).toFixed(0)} | ${(rss[1]! / 1e6).toFixed(0)} | ${agreement(r.efed[0]!.generatedIds, r.llama[0]!.generatedIds)}/${DECODE} |`,
      );
    }
  }
}

const table = [
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"}.`,
  `Prompt ${PROMPT} tokens, greedy decode ${DECODE}; medians of ${opts.rounds} interleaved rounds, each run in its own process.`,
  "eFed runs the model directory, llama.cpp (node-llama-cpp 3.21.1, CPU) the GGUF `efed convert` exported from it;",
  "the quantized rows run eFed on the import of that same GGUF (every matrix quantized, the LM head included), so both",
  "read identical weights. eFed's single sequence runs in place in a KV slot (`Shard.newInPlaceCache`, as `efed generate`).",
  "",
  "| model | eFed · llama.cpp format | threads | eFed decode tok/s | llama.cpp decode tok/s | ratio | eFed prefill tok/s | llama.cpp prefill tok/s | ratio | eFed peak RSS MB | llama.cpp peak RSS MB | greedy tokens alike |",
  "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
  ...rows,
  "",
  "Reading it: the 1-thread rows compare the engines; in the 2-thread rows llama.cpp's two threads share the 2 cores",
  "with Node's own thread (node-llama-cpp drives it from JavaScript), which on some machines costs it more than it gains. eFed",
  "widens 16-bit weights to f32 (no 16-bit kernel in ONNX Runtime for x86), so its F16 row reads twice llama.cpp's",
  "bytes; int8/int4 run ONNX Runtime's MatMulNBits (int8 layers and every LM head with activations rounded to int8",
  "per block, as llama.cpp does; int4 layers at float accuracy, which verifiers audit at the dense tolerance). On the",
  "6M model per-token overheads dominate. Greedy tokens of an int4 row may part after a while: llama.cpp multiplies",
  "Q4_0 by activations it rounds to Q8_0, eFed's int4 layers keep them f32 (at the default accuracy level 0; the",
  "level-4 row is the variant `--accuracy-level 4` makes, which rounds them as llama.cpp does and is audited for gross faults only).",
].join("\n");
console.log(table);
writeDocSections(join(root, "docs", "benchmarks.md"), "Benchmarks", { "Against llama.cpp (npm run bench:peer)": table });
