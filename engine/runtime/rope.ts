import { ropeInverseFrequencies, type ModelConfig } from "../model/config.js";

/** Per-token cos/sin of the rotary angles, (T, headDim) each, laid out as HF's cat(freqs, freqs). */
export function ropeTables(config: ModelConfig, positions: readonly number[]): { cos: Float32Array; sin: Float32Array } {
  const inv = ropeInverseFrequencies(config);
  const D = config.headDim;
  const half = D / 2;
  const cos = new Float32Array(positions.length * D);
  const sin = new Float32Array(positions.length * D);
  positions.forEach((pos, t) => {
    // HF computes the angle in float32; rounding it the same way keeps far positions comparable.
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos * Math.fround(inv[i]!));
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[t * D + i] = c;
      cos[t * D + half + i] = c;
      sin[t * D + i] = s;
      sin[t * D + half + i] = s;
    }
  });
  return { cos, sin };
}

/** Causal attention bias (T, past+T): query t (at position past+t) sees keys 0..past+t. */
export function causalMask(past: number, T: number): Float32Array {
  const S = past + T;
  const mask = new Float32Array(T * S);
  for (let t = 0; t < T; t++) mask.fill(-Infinity, t * S + past + t + 1, (t + 1) * S);
  return mask;
}
