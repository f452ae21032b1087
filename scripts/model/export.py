#!/usr/bin/python3
"""Export the trained checkpoint to a Hugging Face Llama directory and check it.

Writes into --out (next to tokenizer.json, tokenizer_config.json, training-log.txt):
  config.json              LlamaForCausalLM config
  model.safetensors        F16 tensors, HF names, no lm_head.weight (tied) -- written by
                           the small safetensors writer below
  generation_config.json
  README.md                model card (numbers filled in from this run)

Checks (all from the exported F16 file, re-read by our own reader):
  * header/tensor names/shapes/dtypes and file layout;
  * validation loss recomputed with the F16 weights (upcast to fp32 for compute)
    and compared with the fp32 loss at the end of training;
  * an independent NumPy forward pass (written from the HF Llama equations) agrees
    with the PyTorch model on the same F16 weights;
  * greedy continuations of fixed prompts;
  * the directory is at most 16 MB.

Usage:
  /usr/bin/python3 scripts/model/export.py --out models/kjv-llama-6m
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.dont_write_bytecode = True  # keep the repository free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
from llama import LlamaConfig, LlamaForCausalLM, count_params  # noqa: E402
from prepare_data import ensure_data, split_verses  # noqa: E402
from train import token_streams, val_windows, evaluate  # noqa: E402

MAX_DIR_BYTES = 16 * 1024 * 1024
PROMPTS = [
    "In the beginning",
    "And the LORD said unto Moses",
    "The LORD is my shepherd",
    "Blessed are the",
    "For God so loved the world",
    "And Jesus answered and said unto them",
]

# ---------------------------------------------------------------- safetensors

_DTYPES = {"F16": (np.float16, 2), "F32": (np.float32, 4), "BF16": (None, 2)}


def save_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> numpy array (little-endian). Format: u64 LE header length,
    JSON header {name: {dtype, shape, data_offsets:[begin,end]}} (offsets relative to the
    byte buffer that follows the header), then the raw tensor bytes."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        if a.dtype == np.float16:
            dtype = "F16"
        elif a.dtype == np.float32:
            dtype = "F32"
        else:
            raise TypeError("unsupported dtype %s for %s" % (a.dtype, name))
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)  # pad so tensor data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for c in chunks:
            f.write(c)


def load_safetensors(path):
    """Returns (dict name -> numpy array, metadata). Validates the layout strictly."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out, spans = {}, []
    for name, info in header.items():
        np_dtype, size = _DTYPES[info["dtype"]]
        b, e = info["data_offsets"]
        count = int(np.prod(info["shape"])) if info["shape"] else 1
        assert e - b == count * size, name
        spans.append((b, e))
        out[name] = np.frombuffer(data, dtype=np.dtype(np_dtype).newbyteorder("<"), count=count,
                                  offset=base + b).reshape(info["shape"])
    spans.sort()
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:])), "gaps/overlaps"
    assert base + spans[-1][1] == len(data), "trailing bytes"
    return out, meta


# ---------------------------------------------------------------- HF files

def hf_config(cfg):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "hidden_size": cfg.hidden_size,
        "initializer_range": cfg.initializer_range,
        "intermediate_size": cfg.intermediate_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "mlp_bias": False,
        "num_attention_heads": cfg.num_attention_heads,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_key_value_heads": cfg.num_key_value_heads,
        "pretraining_tp": 1,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_scaling": None,
        "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": True,
        "torch_dtype": "float16",
        "use_cache": True,
        "vocab_size": cfg.vocab_size,
    }


def expected_names(cfg):
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    for i in range(cfg.num_hidden_layers):
        p = "model.layers.%d." % i
        names += [p + "self_attn.%s_proj.weight" % x for x in "qkvo"]
        names += [p + "mlp.%s_proj.weight" % x for x in ("gate", "up", "down")]
        names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
    return sorted(names)


# ---------------------------------------------------------------- NumPy reference

def numpy_forward(w, cfg, ids):
    """Plain NumPy Llama forward (float32 compute) from HF-named weights, following
    transformers' modeling_llama: RMSNorm, rotate_half RoPE, repeat_kv GQA, SwiGLU."""
    f = {k: v.astype(np.float32) for k, v in w.items()}
    d, H, KV = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
    s = len(ids)

    def rms(x, g):
        return g * (x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg.rms_norm_eps))

    inv = 1.0 / (cfg.rope_theta ** (np.arange(0, d, 2, dtype=np.float32) / d))
    fr = np.outer(np.arange(s, dtype=np.float32), inv)
    emb = np.concatenate([fr, fr], -1)
    cos, sin = np.cos(emb), np.sin(emb)

    def rope(x):  # x [heads, s, d]
        rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
        return x * cos + rot * sin

    x = f["model.embed_tokens.weight"][ids]
    causal = np.triu(np.full((s, s), -np.inf, dtype=np.float32), 1)
    for i in range(cfg.num_hidden_layers):
        p = "model.layers.%d." % i
        h = rms(x, f[p + "input_layernorm.weight"])
        q = (h @ f[p + "self_attn.q_proj.weight"].T).reshape(s, H, d).transpose(1, 0, 2)
        k = (h @ f[p + "self_attn.k_proj.weight"].T).reshape(s, KV, d).transpose(1, 0, 2)
        v = (h @ f[p + "self_attn.v_proj.weight"].T).reshape(s, KV, d).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        k = np.repeat(k, H // KV, axis=0)
        v = np.repeat(v, H // KV, axis=0)
        a = q @ k.transpose(0, 2, 1) / math.sqrt(d) + causal
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        o = (a @ v).transpose(1, 0, 2).reshape(s, H * d)
        x = x + o @ f[p + "self_attn.o_proj.weight"].T
        h = rms(x, f[p + "post_attention_layernorm.weight"])
        g = h @ f[p + "mlp.gate_proj.weight"].T
        u = h @ f[p + "mlp.up_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * u) @ f[p + "mlp.down_proj.weight"].T
    x = rms(x, f["model.norm.weight"])
    return x @ f["model.embed_tokens.weight"].T


# ---------------------------------------------------------------- main

def sha256(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/kjv-llama-6m-work")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=60)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ck = torch.load(os.path.join(args.work, "checkpoint.pt"), map_location="cpu")
    cfg = LlamaConfig(**ck["config"])
    summary = ck["summary"]
    sd = ck["state_dict"]

    # 1. write safetensors (F16) with HF names; the tied lm_head is not stored
    names = expected_names(cfg)
    assert sorted(sd.keys()) == names, set(sd.keys()) ^ set(names)
    tensors = {k: sd[k].detach().to(torch.float32).numpy().astype(np.float16) for k in names}
    st_path = os.path.join(args.out, "model.safetensors")
    save_safetensors(st_path, tensors, metadata={"format": "pt"})
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(hf_config(cfg), f, indent=2)
        f.write("\n")
    gen_cfg = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id,
               "do_sample": False, "max_length": cfg.max_position_embeddings}
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump(gen_cfg, f, indent=2)
        f.write("\n")

    # 2. reload with our reader, check names/shapes/dtypes, rebuild the model from F16
    w, meta = load_safetensors(st_path)
    assert sorted(w) == names and "lm_head.weight" not in w
    for k in names:
        assert w[k].dtype == np.float16 and tuple(w[k].shape) == tuple(sd[k].shape), k
    model = LlamaForCausalLM(cfg)
    missing = model.load_state_dict({k: torch.from_numpy(w[k].astype(np.float32)) for k in names}, strict=True)
    del missing
    model.eval()
    n_params = count_params(model)
    print("safetensors: %d tensors, %d parameters, %d bytes" % (len(w), n_params, os.path.getsize(st_path)))

    # 3. validation loss from the F16 weights
    tok = bpe.Tokenizer.from_file(os.path.join(args.out, "tokenizer.json"))
    verses = ensure_data(args.work)
    _, val_ids = token_streams(tok, verses)
    vwins = val_windows(val_ids, summary["args"]["ctx"])
    val16, count16 = evaluate(model, vwins, tok.bos_id)
    print("val loss: fp32 (end of training) %.4f, F16 weights %.4f nats/token over %d tokens" % (
        summary["final_val_loss"], val16, count16))
    assert abs(val16 - summary["final_val_loss"]) < 0.01, "F16 export changed the loss too much"

    # 4. independent NumPy forward vs the PyTorch model on the same F16 weights
    probe = tok.encode("In the beginning God created the heaven and the earth. And the earth was")
    with torch.no_grad():
        lt = model(torch.tensor([probe]))[0].numpy()
    ln = numpy_forward(w, cfg, np.array(probe))
    max_diff = float(np.abs(lt - ln).max())
    print("NumPy reference vs PyTorch logits: max |diff| %.2e over %d positions" % (max_diff, len(probe)))
    assert max_diff < 1e-3, max_diff

    # 5. greedy continuations (from the F16 weights)
    samples = []
    for p in PROMPTS:
        ids = model.generate_greedy(tok.encode(p), args.max_new_tokens, eos_id=tok.eos_id)
        text = tok.decode(ids)
        ended = ids[-1] == tok.eos_id
        samples.append((p, text, ended))
        print("GREEDY %r -> %r%s" % (p, text, "" if ended else " ..."))

    # 6. README, sizes
    val_bytes = sum(len(v.encode("utf-8")) for v in split_verses(verses)[1])
    write_readme(args, cfg, summary, n_params, val16, count16, max_diff, samples, val_bytes)
    files = sorted(os.listdir(args.out))
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in files)
    for fn in files:
        print("  %-24s %10d bytes" % (fn, os.path.getsize(os.path.join(args.out, fn))))
    print("directory total %d bytes (limit %d)" % (total, MAX_DIR_BYTES))
    assert total <= MAX_DIR_BYTES
    print("model.safetensors sha256 %s" % sha256(st_path))


def write_readme(args, cfg, s, n_params, val16, count16, max_diff, samples, val_bytes):
    out = args.out
    st_path = os.path.join(out, "model.safetensors")
    st_bytes = os.path.getsize(st_path)
    a = s["args"]
    ppl = lambda x: math.exp(x)  # noqa: E731
    emb = cfg.vocab_size * cfg.hidden_size
    stopped = ("**Stopped early by the wall-clock guard** after %d of %d planned steps." % (
        s["steps"], s["planned_steps"])) if s["stopped_early"] else "All %d planned steps ran." % s["steps"]
    sample_md = "\n".join(
        "* `%s` →\n  > %s%s" % (p, t.replace("\n", " "), "" if ended else " …(cut at %d new tokens)" % args.max_new_tokens)
        for p, t, ended in samples)
    hist = "\n".join("| %d | %.3f | %.3f |" % (h["step"], h["train"], h["val_subset"]) for h in s["history"])
    text = f"""# kjv-llama-6m

A tiny Llama-architecture causal language model trained from scratch, on CPU, on the
King James Version of the Bible (public domain). It is the small real model that eFed
ships for tests and demos: it is in the standard Hugging Face `LlamaForCausalLM`
layout (`config.json`, `model.safetensors`, `tokenizer.json`), so anything that
loads Llama checkpoints can load it. It writes KJV-flavoured English; it knows
nothing else.

## Data

* Text: the KJV from Debian's `bible-kjv-text` package (`/usr/lib/bible.data`, a
  compressed, indexed format), dumped verse by verse with that package's reader
  program `bible` (`bible -f Gen1:1-Rev22:21`, Debian package `bible-kjv`); the verse
  references are stripped. 31,102 verses, 4,137,847 bytes of ASCII.
  The KJV text (1611) is in the public domain.
* Each verse becomes `<s> verse </s>`; verses are concatenated in canonical order.
* Split: the **last 5% of verses** (1,555 verses, Colossians 4:5 – Revelation 22:21)
  are held out as validation; the first 29,547 verses are training data.
  Training tokens: {s['train_tokens']:,}; validation tokens: {s['val_tokens']:,}.
  (The validation books are mostly epistles and Revelation, whose style differs from
  the mostly Old-Testament training text, so validation loss is a fair, somewhat
  pessimistic, held-out number.)
* Losses exclude targets equal to `<s>` (which always follows `</s>`).

## Tokenizer

Byte-level BPE (GPT-2 style) trained by `scripts/model/train_tokenizer.py` (our own
implementation) on the training verses only. Vocabulary 2,048 = 3 special tokens
(`<unk>`=0, `<s>`=1, `</s>`=2) + 256 byte tokens + 1,789 merges. Hugging Face
`tokenizer.json` (model `BPE`, `ByteLevel` pre-tokenizer/decoder, GPT-2 regex,
`TemplateProcessing` that prepends `<s>`), `tokenizer_config.json` with
`add_bos_token: true`. About 3.7 bytes per token on this text.
Verified with the npm package `@huggingface/tokenizers@0.2.0`: encode→decode
gives back the text for all 31,102 verses plus awkward strings (Unicode, emoji,
whitespace runs), and its token ids equal those of the Python encoder
(`scripts/model/verify_tokenizer.py`).

## Model

| field | value |
| --- | --- |
| architecture | `LlamaForCausalLM` (RMSNorm, RoPE, grouped-query attention, SwiGLU, tied embeddings, no biases) |
| vocab_size | {cfg.vocab_size} |
| hidden_size | {cfg.hidden_size} |
| num_hidden_layers | {cfg.num_hidden_layers} |
| num_attention_heads / num_key_value_heads | {cfg.num_attention_heads} / {cfg.num_key_value_heads} (head_dim {cfg.head_dim}) |
| intermediate_size | {cfg.intermediate_size} |
| max_position_embeddings | {cfg.max_position_embeddings} (trained with context {a['ctx']}) |
| rope_theta / rms_norm_eps | {cfg.rope_theta:g} / {cfg.rms_norm_eps:g} |
| parameters | **{n_params:,}** ({emb:,} in the tied embedding, {n_params - emb:,} in the layers) |
| weights | `model.safetensors`, float16, {st_bytes:,} bytes, no `lm_head.weight` (tied to `model.embed_tokens.weight`) |

## Training

`scripts/model/train.py`: PyTorch {s['torch']} (Debian `python3-torch`), CPU, 2 threads,
`nice -n 10`, on a shared 2-core machine. Seed {a['seed']}, deterministic algorithms.
AdamW (β = 0.9, 0.95, weight decay {a['weight_decay']} on matrices), peak LR {a['lr']:g},
{a['warmup']} warm-up steps then cosine decay to {a['lr'] * a['min_lr_ratio']:g},
gradient clip {a['grad_clip']}, batch {a['batch_size']} × {a['ctx']} tokens of random
windows of the training stream.

* Steps: **{s['steps']}** ({s['tokens_seen']:,} tokens, {s['epochs']:.2f} epochs). {stopped}
* Training time: **{s['train_time_s'] / 60:.1f} minutes** wall clock (budget {a['time_budget'] / 60:.0f}).
* Final **training** loss: **{s['final_train_loss']:.4f} nats/token** (perplexity {ppl(s['final_train_loss']):.2f};
  {s['train_count']:,} tokens from evenly spaced training windows, evaluation mode).
* Final **validation** loss: **{s['final_val_loss']:.4f} nats/token** (perplexity **{ppl(s['final_val_loss']):.2f}**;
  all {s['val_count']:,} held-out tokens), fp32 weights at the end of training.
* Validation loss recomputed by `scripts/model/export.py` from the exported
  **float16** `model.safetensors`: **{val16:.4f} nats/token** (perplexity {ppl(val16):.2f}).
* An independent NumPy forward pass written from the Hugging Face Llama equations
  agrees with the PyTorch model on the exported weights (max |Δlogit| = {max_diff:.1e}).

Per-token numbers are per BPE token (≈3.6 bytes); in bits per byte the validation loss
is about {s['final_val_loss'] / math.log(2) * s['val_count'] / val_bytes:.2f} (total nats over the {val_bytes:,} bytes
of validation verse text; the `</s>` predictions are counted, verse separators are not bytes).

Loss during training (train = mean of the logged steps; val = {a['eval_windows']}
evenly spaced validation windows):

| step | train | val (subset) |
| --- | --- | --- |
{hist}

The full log is `training-log.txt`.

## Greedy continuations

From the float16 weights, `<s>` + prompt, greedy, up to {args.max_new_tokens} new tokens or `</s>`:

{sample_md}

## Checked with eFed's own engine

eFed's inference engine (`engine/`, ONNX Runtime, `@huggingface/tokenizers`) loads this
directory unchanged, and its greedy output is token-for-token the same as the PyTorch
model's above, e.g.

```sh
npx efed generate --model models/kjv-llama-6m --prompt "And the LORD said unto Moses" --max-tokens 60
```

(checked by hand for the first three prompts when the model was made; not part of
`export.py`).

## Reproduce

From the repository root, on Debian bookworm (only Debian packages and npm are needed):

```sh
apt-get update
apt-get install -y python3-torch python3-numpy python3-regex bible-kjv bible-kjv-text libopenblas0-openmp
/usr/bin/python3 scripts/model/prepare_data.py                                   # KJV -> /tmp/kjv-llama-6m-work/kjv_verses.txt
/usr/bin/python3 scripts/model/train_tokenizer.py --out models/kjv-llama-6m      # tokenizer.json, tokenizer_config.json
mkdir -p /tmp/tok && (cd /tmp/tok && npm init -y >/dev/null && npm install --no-save @huggingface/tokenizers@0.2.0)
/usr/bin/python3 scripts/model/verify_tokenizer.py --model models/kjv-llama-6m --npm-dir /tmp/tok
nohup nice -n 10 /usr/bin/python3 scripts/model/train.py --out models/kjv-llama-6m > /tmp/kjv-train.stdout 2>&1 &
#   ... wait for it (about {s['train_time_s'] / 60:.0f} minutes here); it writes models/kjv-llama-6m/training-log.txt
#   and /tmp/kjv-llama-6m-work/checkpoint.pt
/usr/bin/python3 scripts/model/export.py --out models/kjv-llama-6m               # config, safetensors, README, checks
```

`python3` must be Debian's `/usr/bin/python3` (the one with `python3-torch`).
`libopenblas0-openmp` is not required for correctness, but without it Debian's torch
uses the reference BLAS and trains about 4× slower. Scripts: `prepare_data.py`
(data), `bpe.py` (byte-level BPE encode/decode), `train_tokenizer.py`,
`verify_tokenizer.py`, `llama.py` (the model), `train.py`, `export.py` (safetensors
writer/reader, checks, this README). All runs are seeded; the exact numbers can
still differ slightly on another CPU/BLAS, and the wall-clock guard could cut a much
slower run short (the log says so if it does).

`model.safetensors` sha256: `{sha256(st_path)}`

## Limits

A 6.4M-parameter model trained for under an hour on one book: it produces
plausible-looking KJV phrasing, but greedy decoding often falls into loops
("and the king of Babylon, and the king of Babylon, ..."), and it has no factual
reliability. The gap between training and validation loss is partly style (held-out
epistles/Revelation vs. mostly Old-Testament training text) and partly memorisation
over {s['epochs']:.1f} epochs.
It is meant for exercising inference code paths with a real trained model, not for use
as a language model.
"""
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
