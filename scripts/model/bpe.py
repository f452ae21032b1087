"""Byte-level BPE (GPT-2 style): shared helpers for training, encoding and decoding.

Conventions follow Hugging Face `tokenizers` ByteLevel BPE exactly, so that the
`tokenizer.json` we write encodes identically in HF tokenizers (Rust/Python) and
in @huggingface/tokenizers (JS):

  * text is split by the GPT-2 regex (ByteLevel pre_tokenizer, use_regex=true,
    add_prefix_space=false);
  * each piece's UTF-8 bytes are mapped to printable unicode characters with the
    GPT-2 `bytes_to_unicode` table (so a space becomes "\u0120" = "G-dot");
  * merges are applied lowest rank first (GPT-2 `bpe()` loop).
"""
import json

try:
    import regex as _re  # Debian: python3-regex (supports \p{L}, \p{N})
except ImportError as e:  # pragma: no cover
    raise SystemExit("needs the `regex` module: apt-get install -y python3-regex") from e

# The GPT-2 pre-tokenisation pattern (identical to HF ByteLevel's).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_PAT = _re.compile(GPT2_PATTERN)

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = [UNK, BOS, EOS]  # ids 0, 1, 2


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) \
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {c: b for b, c in BYTE_ENCODER.items()}


def pretokenize(text):
    """Split text like HF ByteLevel pre_tokenizer; return byte-mapped pieces."""
    return ["".join(BYTE_ENCODER[b] for b in piece.encode("utf-8")) for piece in _PAT.findall(text)]


class Tokenizer:
    """Encoder/decoder for a trained vocab + merge list."""

    def __init__(self, vocab, merges, add_bos=True):
        self.vocab = dict(vocab)  # token string -> id
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.ranks = {tuple(m): r for r, m in enumerate(merges)}
        self.add_bos = add_bos
        self.bos_id = self.vocab[BOS]
        self.eos_id = self.vocab[EOS]
        self.unk_id = self.vocab[UNK]
        self.special_ids = {self.vocab[t] for t in SPECIAL_TOKENS}
        self._cache = {}

    @classmethod
    def from_file(cls, tokenizer_json, add_bos=True):
        with open(tokenizer_json, encoding="utf-8") as f:
            tj = json.load(f)
        model = tj["model"]
        merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
        vocab = dict(model["vocab"])
        for t in tj.get("added_tokens", []):
            vocab[t["content"]] = t["id"]
        return cls(vocab, merges, add_bos=add_bos)

    def bpe(self, piece):
        """Apply merges to one byte-mapped piece (GPT-2 algorithm)."""
        if piece in self._cache:
            return self._cache[piece]
        word = list(piece)
        while len(word) > 1:
            # lowest-rank adjacent pair
            best, best_rank = None, None
            for pair in zip(word, word[1:]):
                r = self.ranks.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = pair, r
            if best is None:
                break
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == best[0] and word[i + 1] == best[1]:
                    merged.append(best[0] + best[1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self._cache[piece] = word
        return word

    def encode(self, text, add_bos=None):
        add_bos = self.add_bos if add_bos is None else add_bos
        ids = [self.bos_id] if add_bos else []
        for piece in pretokenize(text):
            for tok in self.bpe(piece):
                ids.append(self.vocab.get(tok, self.unk_id))
        return ids

    def decode(self, ids, skip_special_tokens=True):
        parts = []
        for i in ids:
            if i in self.special_ids:
                if not skip_special_tokens:
                    parts.append(self.id_to_token[i].encode("utf-8"))
                continue
            parts.append(bytes(BYTE_DECODER[c] for c in self.id_to_token[i]))
        return b"".join(parts).decode("utf-8", errors="replace")

    def __len__(self):
        return len(self.vocab)
