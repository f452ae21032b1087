/**
 * A plain float64 computation of a Llama-family model, written for clarity (llama2.c style), used
 * only by tests as the ground truth the ONNX engine is compared against. It recomputes every
 * token's attention from scratch: no cache, no tricks.
 */
import { ropeInverseFrequencies, type ModelConfig } from "../../engine/model/config.js";
import type { ModelDirectory } from "../../engine/model/modelDir.js";
import { factorToDense, type Factor, type Projection } from "../../engine/model/projection.js";
import { loadHeadWeights, loadLayerWeights, type LayerWeights } from "../../engine/model/weights.js";

type Vec = Float64Array;

/** y = W·x for W stored row-major (out, in), plus an optional bias. */
function matvec(w: Float32Array, x: Vec, out: number, inDim: number, bias?: Float32Array): Vec {
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = bias === undefined ? 0 : bias[o]!;
    const row = o * inDim;
    for (let i = 0; i < inDim; i++) s += w[row + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

/** y = W·x for a possibly factored W = F0·F1·…: the factors apply right to left, in float64. */
const denseFactors = new WeakMap<Factor, Float32Array>();

function project(p: Projection, x: Vec, bias?: Float32Array): Vec {
  let y = x;
  for (let i = p.factors.length - 1; i >= 0; i--) {
    const f = p.factors[i]!;
    let w = denseFactors.get(f);
    if (w === undefined) denseFactors.set(f, (w = factorToDense(f)));
    y = matvec(w, y, f.rows, f.cols, i === 0 ? bias : undefined);
  }
  return y;
}

function rmsnorm(x: Vec, w: Float32Array, eps: number): Vec {
  let ss = 0;
  for (const v of x) ss += v * v;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * inv * w[i]!);
}

/** Rotates each head's vector in place: HF rotate_half convention (pairs i and i + D/2). */
function rope(vec: Vec, heads: number, D: number, pos: number, inv: Float64Array): void {
  const half = D / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      const angle = pos * inv[i]!;
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      const a = vec[h * D + i]!;
      const b = vec[h * D + half + i]!;
      vec[h * D + i] = a * c - b * s;
      vec[h * D + half + i] = b * c + a * s;
    }
  }
}

export class ReferenceModel {
  private readonly c: ModelConfig;
  private readonly layers: LayerWeights[];
  private readonly embed: Float32Array;
  private readonly finalNorm: Float32Array;
  private readonly lmHead: Float32Array;
  private readonly inv: Float64Array;

  constructor(model: ModelDirectory) {
    this.c = model.config;
    this.layers = Array.from({ length: this.c.numLayers }, (_, l) => loadLayerWeights(model, l));
    const head = loadHeadWeights(model);
    this.embed = head.embed;
    this.finalNorm = head.finalNorm;
    this.lmHead = head.lmHead;
    this.inv = ropeInverseFrequencies(this.c);
  }

  /** Logits (vocab) at every position of `ids`, computed from scratch. */
  logits(ids: readonly number[]): Vec[] {
    const c = this.c;
    const { hiddenSize: H, headDim: D, numHeads: nH, numKvHeads: kvH } = c;
    const group = nH / kvH;
    // x[t]: hidden state of token t, (T, H)
    let x: Vec[] = ids.map((id) => Float64Array.from(this.embed.subarray(id * H, (id + 1) * H)));
    for (const w of this.layers) {
      // attention: project every token, then each query attends to keys 0..t
      const normed = x.map((v) => rmsnorm(v, w.inputNorm, c.rmsNormEps));
      const q = normed.map((v) => project(w.q, v, w.qBias));
      const k = normed.map((v) => project(w.k, v, w.kBias));
      const v = normed.map((n) => project(w.v, n, w.vBias));
      q.forEach((vec, t) => rope(vec, nH, D, t, this.inv));
      k.forEach((vec, t) => rope(vec, kvH, D, t, this.inv));
      x = x.map((xt, t) => {
        const ctx = new Float64Array(nH * D);
        for (let h = 0; h < nH; h++) {
          const kv = Math.floor(h / group);
          const scores = new Float64Array(t + 1);
          for (let j = 0; j <= t; j++) {
            let s = 0;
            for (let d = 0; d < D; d++) s += q[t]![h * D + d]! * k[j]![kv * D + d]!;
            scores[j] = s / Math.sqrt(D);
          }
          const max = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - max));
          const sum = e.reduce((a, b) => a + b, 0);
          for (let j = 0; j <= t; j++) {
            for (let d = 0; d < D; d++) ctx[h * D + d]! += (e[j]! / sum) * v[j]![kv * D + d]!;
          }
        }
        const attn = project(w.o, ctx, w.oBias);
        return xt.map((val, i) => val + attn[i]!);
      });
      // MLP: down(silu(gate(n)) * up(n))
      x = x.map((xt) => {
        const n = rmsnorm(xt, w.postNorm, c.rmsNormEps);
        const gate = project(w.gate, n);
        const up = project(w.up, n);
        const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
        const down = project(w.down, act);
        return xt.map((val, i) => val + down[i]!);
      });
    }
    return x.map((xt) => matvec(this.lmHead, rmsnorm(xt, this.finalNorm, c.rmsNormEps), c.vocabSize, H));
  }
}
