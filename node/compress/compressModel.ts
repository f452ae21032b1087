import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { FactorNames, QUANT_ACCURACY_LEVELS, accuracyLevelFor, type CompressionSpec, type MatrixCompression, type QuantAccuracyLevel } from "../../engine/model/compression.js";
import { buildManifest, MANIFEST_FILE, writeManifest } from "../../engine/model/manifest.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { QUANT_BITS, quantize, type QuantBits } from "../../engine/model/projection.js";
import { writeSafetensors, type TensorToWrite } from "../../engine/model/safetensorsWriter.js";
import { EMBED_TOKENS, layerPrefix, lmHeadTensorName, PROJECTIONS, projectionShapes, type ProjectionKey } from "../../engine/model/weights.js";
import type { ProbePoint } from "../../engine/onnx/shardGraph.js";
import { float32ToBF16Bytes, float32ToF16Bytes, isDType } from "../../protocol/dtype.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { allocateByEnergy, allocateByRatio, maxUsefulRank, storedParameters, type RankChoice, type Spectrum } from "./allocate.js";
import {
  calibrationSequences,
  calibrationSequencesFromIds,
  DEFAULT_CALIBRATION_FILE,
  LayerCalibrator,
  readCalibrationIds,
  readCalibrationText,
  sampledCalibrationSequences,
} from "./calibration.js";
import { dampedCholesky, fromFloat32, Gemm, multiplyByLowerInverse, Svd, type Mat } from "./linalg.js";
import { parseMethod, type CompressionMethod } from "./method.js";
import { putQuantized } from "./quantizedTensors.js";

export interface CompressOptions {
  method: string;
  /** Fraction of the projections' weights to remove, in (0, 1) (SVD methods). */
  ratio?: number | undefined;
  /** Fraction of each matrix's spectral energy to keep, in (0, 1) (SVD methods; the paper's threshold). */
  energy?: number | undefined;
  /** One rank for every projection (SVD methods), refused above a matrix's break-even rank. */
  rank?: number | undefined;
  /** Calibration text for svd-whiten (default: the shipped King James excerpt). */
  calibFile?: string | undefined;
  /** Calibration token ids for svd-whiten (a file of integers), instead of text: for models without a tokenizer. */
  calibIds?: string | undefined;
  calibTokens?: number | undefined;
  calibSeqLength?: number | undefined;
  blockSize?: number | undefined;
  /** Also quantize the embeddings and LM head to this many bits (the client's side: faster decode, a quarter of the bytes at 8). */
  headBits?: QuantBits | undefined;
  /** MatMulNBits accuracy level of the quantized layers (default: accuracyLevelFor their bits); quantized methods only. */
  accuracyLevel?: QuantAccuracyLevel | undefined;
  /** Added to the calibration Gram's diagonal, relative to its mean diagonal, so it is positive definite. */
  damping?: number | undefined;
  /** Per-matrix ranks to use as they are (e.g. another variant's, to compare methods at the same ranks). */
  ranks?: ReadonlyMap<string, RankChoice> | undefined;
  /**
   * Decompositions kept between calls on the same source (and the same calibration), so several
   * ratios of one method cost one set of SVDs (benchmarks).
   */
  decompositionCache?: Map<string, unknown> | undefined;
  /** Intra-op threads of the float64 GEMMs (default 1). */
  threads?: number | undefined;
  onProgress?: ((phase: string, done: number, total: number) => void) | undefined;
}

export interface MatrixReport {
  name: string;
  rows: number;
  cols: number;
  rank: RankChoice | undefined;
  bits: QuantBits | undefined;
  /** Fraction of the (whitened, for svd-whiten) spectral energy the truncation discards. */
  discardedEnergy: number;
}

export interface CompressReport {
  method: string;
  variantId: string;
  /** Fraction of the projections' weights removed (parameters, not bytes). */
  parameterReduction: number;
  matrices: MatrixReport[];
  /** Seconds spent in SVDs, and the slowest single one. */
  svdSeconds: number;
  slowestSvd: { name: string; rows: number; cols: number; seconds: number } | undefined;
  calibrationTokens: number;
}

export const DEFAULTS = { calibTokens: 8192, calibSeqLength: 256, blockSize: 32, damping: 1e-4 } as const;

/** Which calibration point feeds each projection (see PROBE_POINTS). */
const INPUT_OF: Record<ProjectionKey, ProbePoint> = { q: "attn", k: "attn", v: "attn", o: "o", gate: "mlp", up: "mlp", down: "down" };

interface Decomposed {
  name: string;
  rows: number;
  cols: number;
  svd: Svd;
  /** Cholesky factor of the calibration Gram when whitened: the right factor is multiplied by its inverse. */
  whitening: Mat | undefined;
}

/**
 * Compresses the layers' projections of the dense model in `sourceDir` into a new model directory
 * `outDir` with its own manifest (whose hash is the new variant id).
 */
export async function compressModel(sourceDir: string, outDir: string, options: CompressOptions): Promise<CompressReport> {
  const method = parseMethod(options.method);
  checkOptions(method, options);
  if (resolve(sourceDir) === resolve(outDir)) throw new InvalidArgumentError(`--out must differ from --model (${outDir})`);
  const source = ModelDirectory.open(sourceDir);
  if (source.compression.method !== "none") {
    throw new InvalidArgumentError(`${sourceDir} is already compressed (${source.compression.method}); compress the dense model`);
  }
  const gemm = await Gemm.create({ threads: options.threads ?? 1 });
  try {
    return await compressWith(gemm, source, outDir, method, options);
  } finally {
    await gemm.release();
    source.close();
  }
}

interface Projection {
  key: ProjectionKey;
  layer: number;
  /** e.g. "model.layers.3.mlp.up_proj" */
  name: string;
}

interface Decomposition {
  decomposed: Map<string, Decomposed>;
  svdSeconds: number;
  slowestSvd: CompressReport["slowestSvd"];
  calibrationTokens: number;
}

async function compressWith(
  gemm: Gemm,
  source: ModelDirectory,
  outDir: string,
  method: CompressionMethod,
  options: CompressOptions,
): Promise<CompressReport> {
  const projections = Array.from({ length: source.config.numLayers }, (_, l) =>
    (Object.keys(PROJECTIONS) as ProjectionKey[]).map((key) => ({ key, layer: l, name: layerPrefix(l) + PROJECTIONS[key] })),
  ).flat();
  const d = method.svd === undefined ? undefined : await decompose(gemm, source, projections, method.svd, options);
  const ranks = d === undefined ? new Map<string, RankChoice>() : chooseRanks(d.decomposed, options);
  const written = await writeVariant(gemm, source, outDir, projections, method, d, ranks, options);
  return {
    method: method.name,
    variantId: written.variantId,
    parameterReduction: written.parameterReduction,
    matrices: written.reports,
    svdSeconds: d?.svdSeconds ?? 0,
    slowestSvd: d?.slowestSvd,
    calibrationTokens: d?.calibrationTokens ?? 0,
  };
}

/** The SVD of every projection — of W·S for svd-whiten, S from its layer's calibration Gram — layer by layer. */
async function decompose(
  gemm: Gemm,
  source: ModelDirectory,
  projections: readonly Projection[],
  kind: NonNullable<CompressionMethod["svd"]>,
  options: CompressOptions,
): Promise<Decomposition> {
  const cache = options.decompositionCache;
  if (cache !== undefined && projections.every((p) => cache.has(`${kind}:${p.name}`))) {
    return {
      decomposed: new Map(projections.map((p) => [p.name, cache.get(`${kind}:${p.name}`) as Decomposed])),
      svdSeconds: 0,
      slowestSvd: undefined,
      calibrationTokens: Number(cache.get(`${kind}:tokens`) ?? 0),
    };
  }
  const shapes = projectionShapes(source.config);
  const progress = options.onProgress ?? (() => {});
  const result: Decomposition = { decomposed: new Map(), svdSeconds: 0, slowestSvd: undefined, calibrationTokens: 0 };
  const calibrator = kind === "svd-whiten" ? await makeCalibrator(source, options, gemm) : undefined;
  result.calibrationTokens = calibrator?.tokens ?? 0;
  for (let l = 0; l < source.config.numLayers; l++) {
    const grams = calibrator === undefined ? undefined : await calibrator.nextLayer();
    const whitenings = new Map<ProbePoint, Mat>();
    for (const p of projections.filter((p) => p.layer === l)) {
      const [rows, cols] = shapes[p.key];
      const w = fromFloat32(rows, cols, source.tensor(FactorNames.dense(p.name), [rows, cols]));
      let whitening: Mat | undefined;
      if (grams !== undefined) {
        const point = INPUT_OF[p.key];
        whitening = whitenings.get(point) ?? whiteningFor(grams[point], options.damping ?? DEFAULTS.damping, p.name);
        whitenings.set(point, whitening);
      }
      const started = performance.now();
      const svd = await Svd.of(whitening === undefined ? w : await gemm.multiply(w, whitening), gemm);
      const seconds = (performance.now() - started) / 1000;
      result.svdSeconds += seconds;
      if (result.slowestSvd === undefined || seconds > result.slowestSvd.seconds) result.slowestSvd = { name: p.name, rows, cols, seconds };
      const entry = { name: p.name, rows, cols, svd, whitening };
      result.decomposed.set(p.name, entry);
      cache?.set(`${kind}:${p.name}`, entry);
      progress("decompose", result.decomposed.size, projections.length);
    }
  }
  cache?.set(`${kind}:tokens`, result.calibrationTokens);
  return result;
}

/** Each projection's rank (or dense), from the options: given ranks, one rank, a ratio or an energy. */
function chooseRanks(decomposed: ReadonlyMap<string, Decomposed>, options: CompressOptions): Map<string, RankChoice> {
  const spectra: Spectrum[] = [...decomposed.values()].map((d) => ({
    name: d.name,
    rows: d.rows,
    cols: d.cols,
    energies: d.svd.values.map((s) => s * s),
  }));
  if (options.ranks !== undefined) return givenRanks(spectra, options.ranks);
  if (options.rank !== undefined) return uniformRanks(spectra, options.rank);
  if (options.ratio !== undefined) return allocateByRatio(spectra, options.ratio);
  return allocateByEnergy(spectra, options.energy!);
}

/** Writes the compressed directory (weights, companion files, manifest); returns its variant id and what it stores. */
async function writeVariant(
  gemm: Gemm,
  source: ModelDirectory,
  outDir: string,
  projections: readonly Projection[],
  method: CompressionMethod,
  d: Decomposition | undefined,
  ranks: ReadonlyMap<string, RankChoice>,
  options: CompressOptions,
): Promise<{ variantId: string; parameterReduction: number; reports: MatrixReport[] }> {
  const shapes = projectionShapes(source.config);
  const progress = options.onProgress ?? (() => {});
  const blockSize = options.blockSize ?? DEFAULTS.blockSize;
  const bits = method.bits;
  const out = new Map<string, TensorToWrite>();
  const matrices: Record<string, MatrixCompression> = {};
  const reports: MatrixReport[] = [];
  const projectionNames = new Map(projections.map((p) => [FactorNames.dense(p.name), p]));
  let denseParameters = 0;
  let storedParameterCount = 0;
  const headTensors = new Set([EMBED_TOKENS, lmHeadTensorName(source.config)]);
  for (const name of source.tensorNames()) {
    const p = projectionNames.get(name);
    const info = source.info(name);
    if (p === undefined) {
      if (options.headBits !== undefined && headTensors.has(name)) {
        const [rows, cols] = [source.config.vocabSize, source.config.hiddenSize];
        putQuantized(out, name, quantize(source.tensor(name, [rows, cols]), rows, cols, options.headBits, blockSize));
        matrices[FactorNames.base(name)] = { bits: options.headBits };
        continue;
      }
      out.set(name, { dtype: info.dtype as TensorToWrite["dtype"], shape: info.shape, data: source.rawBytes(name) });
      continue;
    }
    const [rows, cols] = shapes[p.key];
    const decomposed = d?.decomposed.get(p.name);
    const choice = ranks.get(p.name) ?? "dense";
    const encode = (factorName: string, m: Float32Array, r: number, k: number): void => {
      if (bits !== undefined) {
        putQuantized(out, factorName, quantize(m, r, k, bits, blockSize));
      } else {
        out.set(factorName, { dtype: sourceDtype(info.dtype), shape: [r, k], data: encodeFloats(m, info.dtype) });
      }
    };
    if (choice === "dense") {
      if (bits === undefined) out.set(name, { dtype: info.dtype as TensorToWrite["dtype"], shape: info.shape, data: source.rawBytes(name) });
      else encode(name, source.tensor(name, [rows, cols]), rows, cols);
    } else {
      const { left, right: whitenedRight } = await decomposed!.svd.factors(choice, gemm);
      // whitened: M = W·S was factored, so W ≈ left · (right · S⁻¹)
      const right = decomposed!.whitening === undefined ? whitenedRight : multiplyByLowerInverse(whitenedRight, decomposed!.whitening);
      encode(FactorNames.left(p.name), Float32Array.from(left.data), rows, choice);
      encode(FactorNames.right(p.name), Float32Array.from(right.data), choice, cols);
    }
    const entry: MatrixCompression = {};
    if (choice !== "dense") entry.rank = choice;
    if (bits !== undefined) entry.bits = bits;
    if (Object.keys(entry).length > 0) matrices[p.name] = entry;
    const totalEnergy = decomposed?.svd.values.reduce((a, s) => a + s * s, 0) ?? 0;
    reports.push({
      name: p.name,
      rows,
      cols,
      rank: decomposed === undefined ? undefined : choice,
      bits,
      discardedEnergy: choice === "dense" || decomposed === undefined || totalEnergy === 0 ? 0 : decomposed.svd.discardedEnergy(choice) / totalEnergy,
    });
    denseParameters += rows * cols;
    storedParameterCount += storedParameters({ rows, cols }, choice);
    progress("write", reports.length, projections.length);
  }

  mkdirSync(outDir, { recursive: true });
  copyCompanionFiles(source.dir, outDir);
  writeSafetensors(join(outDir, "model.safetensors"), out);
  const spec: CompressionSpec = { method: options.headBits === undefined ? method.name : `${method.name}+head-int${options.headBits}`, matrices };
  if (bits !== undefined || options.headBits !== undefined) spec.block_size = blockSize;
  if (bits !== undefined) spec.accuracy_level = options.accuracyLevel ?? accuracyLevelFor(bits);
  if (options.ratio !== undefined) spec.ratio = options.ratio;
  if (options.energy !== undefined) spec.energy = options.energy;
  if (options.rank !== undefined) spec.rank = options.rank;
  if (options.ranks !== undefined) spec.ranks = "given";
  if (method.svd === "svd-whiten") spec.calibration = { tokens: d?.calibrationTokens ?? 0, damping: options.damping ?? DEFAULTS.damping };
  const compressed = ModelDirectory.open(outDir);
  const variantId = writeManifest(outDir, buildManifest(compressed, spec));
  compressed.close();
  return { variantId, parameterReduction: 1 - storedParameterCount / denseParameters, reports };
}

function checkOptions(method: CompressionMethod, o: CompressOptions): void {
  const given = [o.ratio, o.energy, o.rank, o.ranks].filter((v) => v !== undefined).length;
  if (method.svd === undefined) {
    if (given > 0) throw new InvalidArgumentError(`--ratio, --energy, --rank and --ranks-from apply to SVD methods, not ${method.name}`);
  } else if (given !== 1) {
    throw new InvalidArgumentError(`${method.name} needs exactly one of --ratio, --energy, --rank or --ranks-from`);
  }
  const fraction = (flag: string, v: number | undefined): void => {
    if (v !== undefined && !(Number.isFinite(v) && v > 0 && v < 1)) {
      throw new InvalidArgumentError(`${flag} must be a fraction strictly between 0 and 1, got ${v}`);
    }
  };
  fraction("--ratio", o.ratio);
  fraction("--energy", o.energy);
  if (o.rank !== undefined && !(Number.isSafeInteger(o.rank) && o.rank > 0)) {
    throw new InvalidArgumentError(`--rank must be a positive integer, got ${o.rank}`);
  }
  if (o.damping !== undefined && !(Number.isFinite(o.damping) && o.damping >= 0)) {
    throw new InvalidArgumentError(`damping must be a non-negative number, got ${o.damping}`);
  }
  if (o.headBits !== undefined && !(QUANT_BITS as readonly number[]).includes(o.headBits)) {
    throw new InvalidArgumentError(`--head-bits must be one of ${QUANT_BITS.join(", ")}, got ${o.headBits}`);
  }
  if (o.accuracyLevel !== undefined) {
    if (method.bits === undefined) throw new InvalidArgumentError(`--accuracy-level applies to quantized methods, not ${method.name}`);
    if (!(QUANT_ACCURACY_LEVELS as readonly number[]).includes(o.accuracyLevel)) {
      throw new InvalidArgumentError(`--accuracy-level must be one of ${QUANT_ACCURACY_LEVELS.join(", ")}, got ${o.accuracyLevel}`);
    }
  }
  for (const [flag, value] of [["--calib", o.calibFile], ["--calib-ids", o.calibIds]] as const) {
    if (value !== undefined && method.svd !== "svd-whiten") throw new InvalidArgumentError(`${flag} applies to svd-whiten methods, not ${method.name}`);
  }
  if (o.calibFile !== undefined && o.calibIds !== undefined) {
    throw new InvalidArgumentError("--calib and --calib-ids are two sources of calibration: give one");
  }
}

function uniformRanks(spectra: readonly Spectrum[], rank: number): Map<string, RankChoice> {
  for (const s of spectra) {
    const limit = maxUsefulRank(s.rows, s.cols);
    if (rank > limit) {
      throw new InvalidArgumentError(
        `--rank ${rank} is above the break-even rank of ${s.name} (${s.rows}×${s.cols}): at most ${limit} stores fewer weights than the dense matrix`,
      );
    }
  }
  return new Map(spectra.map((s) => [s.name, rank]));
}

function givenRanks(spectra: readonly Spectrum[], ranks: ReadonlyMap<string, RankChoice>): Map<string, RankChoice> {
  return new Map(
    spectra.map((s) => {
      const r = ranks.get(s.name) ?? "dense";
      if (r !== "dense" && !(Number.isSafeInteger(r) && r > 0 && r <= maxUsefulRank(s.rows, s.cols))) {
        throw new InvalidArgumentError(`rank ${r} given for ${s.name} (${s.rows}×${s.cols}) is not in 1..${maxUsefulRank(s.rows, s.cols)}`);
      }
      return [s.name, r];
    }),
  );
}

/** The per-matrix ranks a compressed variant's manifest records (matrices it does not list are dense). */
export function ranksOf(dir: string): Map<string, RankChoice> {
  const model = ModelDirectory.open(dir);
  const ranks = new Map<string, RankChoice>();
  for (const [name, m] of Object.entries(model.compression.matrices ?? {})) if (m.rank !== undefined) ranks.set(name, m.rank);
  model.close();
  return ranks;
}

/**
 * Calibration for svd-whiten, from the first source that applies: token ids given, text given (or
 * the shipped text) when the model has a tokenizer, else sequences sampled from the model itself.
 */
async function makeCalibrator(source: ModelDirectory, o: CompressOptions, gemm: Gemm): Promise<LayerCalibrator> {
  const seqLength = Math.min(o.calibSeqLength ?? DEFAULTS.calibSeqLength, source.config.maxPositionEmbeddings);
  const maxTokens = o.calibTokens ?? DEFAULTS.calibTokens;
  let sequences: number[][];
  if (o.calibIds !== undefined) {
    sequences = calibrationSequencesFromIds(source, readCalibrationIds(o.calibIds, source.config.vocabSize), maxTokens, seqLength);
  } else if (existsSync(join(source.dir, "tokenizer.json"))) {
    sequences = calibrationSequences(source, readCalibrationText(o.calibFile ?? DEFAULT_CALIBRATION_FILE), maxTokens, seqLength);
  } else if (o.calibFile !== undefined) {
    throw new InvalidArgumentError(`--calib needs ${join(source.dir, "tokenizer.json")} to read the text with; it does not exist (give --calib-ids instead)`);
  } else {
    const progress = o.onProgress ?? (() => {});
    sequences = await sampledCalibrationSequences(source, maxTokens, seqLength, CALIBRATION_SAMPLE_SEED, (done, total) =>
      progress("sampling calibration from the model", done, total),
    );
  }
  return new LayerCalibrator(source, sequences, gemm);
}

/** Seed of the calibration sampled from a model without a tokenizer (fixed: one variant per source and flags). */
const CALIBRATION_SAMPLE_SEED = 2411;

/** The whitening factor of a projection's calibration Gram, with an error that names the projection. */
function whiteningFor(gram: Mat, damping: number, name: string): Mat {
  try {
    return dampedCholesky(gram, damping);
  } catch {
    throw new InvalidArgumentError(
      `the calibration activations feeding ${name} are degenerate (Gram not positive definite with damping ${damping}); use more calibration text or a larger damping`,
    );
  }
}

function sourceDtype(dtype: string): TensorToWrite["dtype"] {
  return isDType(dtype) ? dtype : "F32";
}

function encodeFloats(values: Float32Array, dtype: string): Uint8Array {
  if (dtype === "F16") return float32ToF16Bytes(values);
  if (dtype === "BF16") return float32ToBF16Bytes(values);
  return bytesOf(values);
}

function bytesOf(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

/** Config, tokenizer and generation settings travel with the weights; the old index and manifest do not. */
function copyCompanionFiles(sourceDir: string, outDir: string): void {
  for (const file of readdirSync(sourceDir)) {
    if (!file.endsWith(".json") || file === "model.safetensors.index.json" || file === MANIFEST_FILE) continue;
    const from = join(sourceDir, file);
    if (statSync(from).isFile()) copyFileSync(from, join(outDir, file));
  }
}
