#!/usr/bin/python3
"""Train a byte-level BPE tokenizer on the KJV training verses and write
Hugging Face `tokenizer.json` + `tokenizer_config.json`.

Vocabulary (2048 ids):
  0 <unk>, 1 <s>, 2 </s>           special tokens
  3 .. 258                          the 256 single-byte tokens (GPT-2 byte->unicode map)
  259 .. 2047                       tokens created by merges, in merge order

Algorithm (classic BPE, Sennrich et al. / GPT-2):
  1. split every training verse with the GPT-2 regex, count each distinct piece;
  2. represent each distinct piece as a list of single-byte symbols;
  3. repeatedly take the most frequent adjacent symbol pair (ties broken by the
     lexicographically smallest pair, so the result is deterministic), record it
     as a merge, and replace it in every piece that contains it;
  4. stop when the vocabulary reaches the target size.
Pair counts are kept incrementally: only pieces containing the merged pair are
re-counted.

Usage:
  /usr/bin/python3 scripts/model/train_tokenizer.py --out models/kjv-llama-6m [--work DIR]
"""
import argparse
import collections
import json
import os
import sys
import time

sys.dont_write_bytecode = True  # keep the repository free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
from prepare_data import ensure_data, split_verses  # noqa: E402

VOCAB_SIZE = 2048
MODEL_MAX_LENGTH = 512


def train_bpe(texts, vocab_size):
    # 1. distinct pieces and their counts
    piece_counts = collections.Counter()
    for t in texts:
        piece_counts.update(bpe.pretokenize(t))
    words = [list(p) for p in piece_counts]
    counts = list(piece_counts.values())

    # initial vocabulary: specials then all 256 bytes (in byte order)
    vocab = {}
    for tok in bpe.SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    for b in range(256):
        vocab[bpe.BYTE_ENCODER[b]] = len(vocab)

    # 2. pair statistics and an index pair -> set of word indices containing it
    pair_counts = collections.Counter()
    where = collections.defaultdict(set)
    for wi, w in enumerate(words):
        for pair in zip(w, w[1:]):
            pair_counts[pair] += counts[wi]
            where[pair].add(wi)

    merges = []
    while len(vocab) < vocab_size:
        if not pair_counts:
            break
        # 3. most frequent pair; ties -> lexicographically smallest pair
        best = min(pair_counts, key=lambda p: (-pair_counts[p], p))
        if pair_counts[best] < 2:
            break
        a, b = best
        new_tok = a + b
        merges.append(best)
        if new_tok not in vocab:  # the same string may arise from two different merges
            vocab[new_tok] = len(vocab)
        for wi in sorted(where.pop(best)):
            w = words[wi]
            c = counts[wi]
            # remove this word's old pair contributions
            for pair in zip(w, w[1:]):
                pair_counts[pair] -= c
                if pair_counts[pair] <= 0:
                    del pair_counts[pair]
            # merge left to right
            merged, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    merged.append(new_tok)
                    i += 2
                else:
                    merged.append(w[i])
                    i += 1
            words[wi] = merged
            # add the new contributions
            for pair in zip(merged, merged[1:]):
                pair_counts[pair] += c
                where[pair].add(wi)
        pair_counts.pop(best, None)
    return vocab, merges


def added_token_entry(tok, tid):
    return {"id": tid, "content": tok, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": False, "special": True}


def tokenizer_json(vocab, merges):
    bos = bpe.BOS
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added_token_entry(t, vocab[t]) for t in bpe.SPECIAL_TOKENS],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                          "trim_offsets": True, "use_regex": True},
        # prepend <s> (add_bos_token); nothing appended
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [vocab[bos]], "tokens": [bos]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True,
                    "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": bpe.UNK,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            # "a b" strings: readable by every tokenizers version (no byte-level
            # token contains a literal space, so the split is unambiguous)
            "merges": ["%s %s" % m for m in merges],
        },
    }


def tokenizer_config(vocab):
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": bpe.BOS,
        "eos_token": bpe.EOS,
        "unk_token": bpe.UNK,
        "pad_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MODEL_MAX_LENGTH,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": {str(vocab[t]): {k: v for k, v in added_token_entry(t, vocab[t]).items()
                                                 if k != "id"} for t in bpe.SPECIAL_TOKENS},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory for tokenizer.json / tokenizer_config.json")
    ap.add_argument("--work", default="/tmp/kjv-llama-6m-work")
    ap.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    args = ap.parse_args()

    verses = ensure_data(args.work)
    train, val = split_verses(verses)  # tokenizer sees the training verses only
    t0 = time.time()
    vocab, merges = train_bpe(train, args.vocab_size)
    print("trained BPE: vocab %d, merges %d, %.1fs" % (len(vocab), len(merges), time.time() - t0))
    assert len(vocab) == args.vocab_size, len(vocab)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json(vocab, merges), f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(vocab), f, ensure_ascii=False, indent=2)
        f.write("\n")

    # self-check: reload from disk, round-trip every verse, report compression
    tok = bpe.Tokenizer.from_file(os.path.join(args.out, "tokenizer.json"))
    n_tok = {"train": 0, "val": 0}
    for name, part in (("train", train), ("val", val)):
        for v in part:
            ids = tok.encode(v, add_bos=False)
            assert tok.decode(ids) == v, v
            n_tok[name] += len(ids)
    n_bytes = {"train": sum(len(v) for v in train), "val": sum(len(v) for v in val)}
    for name in ("train", "val"):
        print("%s: %d verses, %d bytes, %d tokens (%.2f bytes/token)" % (
            name, len(train if name == "train" else val), n_bytes[name], n_tok[name],
            n_bytes[name] / n_tok[name]))
    print("longest tokens:", sorted((t for t in vocab if t not in bpe.SPECIAL_TOKENS),
                                    key=len)[-8:])


if __name__ == "__main__":
    main()
