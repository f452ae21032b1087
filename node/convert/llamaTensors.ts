/**
 * Tensor names of a llama-family model in Hugging Face form and in GGUF (llama.cpp) form, and the
 * one layout difference between them: llama.cpp's "llama" architecture rotates adjacent pairs of
 * a head's query/key dimensions, Hugging Face rotates its two halves, so converters reorder the
 * rows of q_proj and k_proj within each head (qwen2 rotates halves in both and is not reordered).
 */

const GLOBAL: ReadonlyArray<[hf: string, gguf: string]> = [
  ["model.embed_tokens.weight", "token_embd.weight"],
  ["model.norm.weight", "output_norm.weight"],
  ["lm_head.weight", "output.weight"],
];

const PER_LAYER: ReadonlyArray<[hf: string, gguf: string]> = [
  ["input_layernorm.weight", "attn_norm.weight"],
  ["post_attention_layernorm.weight", "ffn_norm.weight"],
  ["self_attn.q_proj.weight", "attn_q.weight"],
  ["self_attn.k_proj.weight", "attn_k.weight"],
  ["self_attn.v_proj.weight", "attn_v.weight"],
  ["self_attn.o_proj.weight", "attn_output.weight"],
  ["self_attn.q_proj.bias", "attn_q.bias"],
  ["self_attn.k_proj.bias", "attn_k.bias"],
  ["self_attn.v_proj.bias", "attn_v.bias"],
  ["mlp.gate_proj.weight", "ffn_gate.weight"],
  ["mlp.up_proj.weight", "ffn_up.weight"],
  ["mlp.down_proj.weight", "ffn_down.weight"],
];

const HF_LAYER = /^model\.layers\.(\d+)\.(.+)$/;
const GGUF_LAYER = /^blk\.(\d+)\.(.+)$/;

/** The GGUF name of a Hugging Face tensor name, or undefined for a name llama.cpp has no slot for. */
export function ggufNameOf(hfName: string): string | undefined {
  const global = GLOBAL.find(([hf]) => hf === hfName);
  if (global !== undefined) return global[1];
  const m = HF_LAYER.exec(hfName);
  const local = m === null ? undefined : PER_LAYER.find(([hf]) => hf === m[2]);
  return local === undefined ? undefined : `blk.${m![1]}.${local[1]}`;
}

/** The Hugging Face name of a GGUF tensor name, or undefined for one eFed does not read. */
export function hfNameOf(ggufName: string): string | undefined {
  const global = GLOBAL.find(([, gguf]) => gguf === ggufName);
  if (global !== undefined) return global[0];
  const m = GGUF_LAYER.exec(ggufName);
  const local = m === null ? undefined : PER_LAYER.find(([, gguf]) => gguf === m[2]);
  return local === undefined ? undefined : `model.layers.${m![1]}.${local[0]}`;
}

/**
 * Heads whose rows a tensor's reordering works on: q_proj's attention heads, k_proj's key/value
 * heads, none for any other tensor or architecture.
 */
export function rotaryHeadsOf(hfName: string, architecture: string, heads: { attention: number; keyValue: number }): number | undefined {
  if (architecture !== "llama") return undefined;
  if (/\.self_attn\.q_proj\.(weight|bias)$/.test(hfName)) return heads.attention;
  if (/\.self_attn\.k_proj\.(weight|bias)$/.test(hfName)) return heads.keyValue;
  return undefined;
}

/**
 * Reorders the rows of a (rows, rowBytes) matrix within each of `heads` heads. Hugging Face → GGUF
 * (`toGguf`): row j·(d/2)+i of a head (half j, index i) moves to row 2i+j; GGUF → Hugging Face
 * undoes it. Works on any row encoding (floats or quantized blocks) since whole rows move.
 */
export function reorderRotaryRows(data: Uint8Array, rows: number, heads: number, toGguf: boolean): Uint8Array {
  const perHead = rows / heads;
  if (!Number.isInteger(perHead) || perHead % 2 !== 0) {
    throw new RangeError(`cannot split ${rows} rows into ${heads} heads of an even size`);
  }
  const rowBytes = data.byteLength / rows;
  const half = perHead / 2;
  const out = new Uint8Array(data.byteLength);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const hfRow = h * perHead + j * half + i;
        const ggufRow = h * perHead + 2 * i + j;
        const [from, to] = toGguf ? [hfRow, ggufRow] : [ggufRow, hfRow];
        out.set(data.subarray(from * rowBytes, (from + 1) * rowBytes), to * rowBytes);
      }
    }
  }
  return out;
}
