"""A minimal Llama decoder in PyTorch, numerically laid out like Hugging Face's
`LlamaForCausalLM` so its state_dict exports 1:1 to HF tensor names.

  * RMSNorm (computed in float32, weight multiplied after casting back)
  * rotary position embedding exactly as HF `LlamaRotaryEmbedding` + `rotate_half`:
        inv_freq = 1 / theta^(arange(0, d, 2) / d)
        emb      = cat(pos * inv_freq, pos * inv_freq)       # [seq, d]
        q'       = q * cos(emb) + rotate_half(q) * sin(emb)
        rotate_half(x) = cat(-x[..., d/2:], x[..., :d/2])
  * grouped-query attention (`num_key_value_heads` < `num_attention_heads`;
    query head h uses key/value head h // (heads / kv_heads), like HF `repeat_kv`)
  * SwiGLU MLP: down(silu(gate(x)) * up(x)); no biases anywhere
  * tied input embedding / output projection (no separate lm_head weight)

Works with torch >= 1.13 (Debian bookworm's python3-torch): attention is written out
explicitly instead of using scaled_dot_product_attention.
"""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class LlamaConfig:
    vocab_size: int = 2048
    hidden_size: int = 256
    num_hidden_layers: int = 8
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    intermediate_size: int = 704
    max_position_embeddings: int = 512
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02
    bos_token_id: int = 1
    eos_token_id: int = 2

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads

    def to_dict(self):
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


def rope_cos_sin(head_dim, theta, seq_len, device=None, dtype=torch.float32):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float().to(device) / head_dim))
    pos = torch.arange(seq_len, dtype=torch.float32, device=device)
    freqs = torch.outer(pos, inv_freq)  # [seq, d/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [seq, d]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x, cos, sin):
    # x: [batch, heads, seq, d]; cos/sin: [seq, d]
    return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.d = cfg.head_dim
        h = cfg.hidden_size
        self.q_proj = nn.Linear(h, self.n_heads * self.d, bias=False)
        self.k_proj = nn.Linear(h, self.n_kv * self.d, bias=False)
        self.v_proj = nn.Linear(h, self.n_kv * self.d, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.d, h, bias=False)

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.n_heads, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.n_kv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.n_kv, self.d).transpose(1, 2)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        rep = self.n_heads // self.n_kv
        if rep > 1:  # HF repeat_kv: kv head j serves query heads j*rep .. j*rep+rep-1
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        # batched matmuls on [b*heads, s, d] (much faster than 4-D matmul on torch 1.13 CPU)
        q = q.reshape(b * self.n_heads, s, self.d)
        k = k.reshape(b * self.n_heads, s, self.d)
        v = v.reshape(b * self.n_heads, s, self.d)
        att = torch.bmm(q, k.transpose(1, 2)) * (1.0 / math.sqrt(self.d)) + mask
        att = F.softmax(att, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.bmm(att, v).view(b, self.n_heads, s, self.d)
        out = out.transpose(1, 2).reshape(b, s, self.n_heads * self.d)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x


class LlamaModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    """state_dict keys: model.embed_tokens.weight, model.layers.{i}...., model.norm.weight."""

    def __init__(self, cfg):
        super().__init__()
        assert cfg.tie_word_embeddings
        self.config = cfg
        self.model = LlamaModel(cfg)
        cos, sin = rope_cos_sin(cfg.head_dim, cfg.rope_theta, cfg.max_position_embeddings)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def init_weights(self, generator):
        """Normal(0, 0.02) for all matrices; residual output projections scaled by
        1/sqrt(2 * layers) (GPT-2 style); norms = 1."""
        std = self.config.initializer_range
        resid_std = std / math.sqrt(2 * self.config.num_hidden_layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() == 1:
                    p.fill_(1.0)
                elif name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                    p.normal_(0.0, resid_std, generator=generator)
                else:
                    p.normal_(0.0, std, generator=generator)

    def forward(self, input_ids):
        b, s = input_ids.shape
        assert s <= self.config.max_position_embeddings
        x = self.model.embed_tokens(input_ids)
        cos = self.rope_cos[:s].to(x.dtype)
        sin = self.rope_sin[:s].to(x.dtype)
        mask = torch.full((s, s), float("-inf"), dtype=x.dtype, device=x.device).triu(1)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        x = self.model.norm(x)
        return F.linear(x, self.model.embed_tokens.weight)  # tied lm_head

    @torch.no_grad()
    def generate_greedy(self, ids, max_new_tokens, eos_id=None):
        ids = list(ids)
        for _ in range(max_new_tokens):
            ctx = ids[-self.config.max_position_embeddings:]
            logits = self.forward(torch.tensor([ctx]))[0, -1]
            nxt = int(torch.argmax(logits.float()))
            ids.append(nxt)
            if eos_id is not None and nxt == eos_id:
                break
        return ids


def count_params(model):
    return sum(p.numel() for p in model.parameters())
