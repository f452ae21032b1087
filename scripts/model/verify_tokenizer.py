#!/usr/bin/python3
"""Check the exported tokenizer with the JavaScript library @huggingface/tokenizers.

For every KJV verse (and a set of awkward strings: unicode, digits, whitespace runs,
apostrophes, the special tokens' text ...) this checks that
  1. JS encode -> JS decode gives back the original text;
  2. JS token ids == the ids of our Python encoder (scripts/model/bpe.py), with <s>
     prepended (add_bos_token) by both;
  3. Python decode(ids) gives back the text.

The npm package is installed in a scratch directory, never in the repository:
  mkdir -p /tmp/tok && cd /tmp/tok && npm init -y && npm install --no-save @huggingface/tokenizers@0.2.0

Usage:
  /usr/bin/python3 scripts/model/verify_tokenizer.py --model models/kjv-llama-6m --npm-dir /tmp/tok
"""
import argparse
import json
import os
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the repository free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
from prepare_data import ensure_data  # noqa: E402

EXTRA = [
    "In the beginning God created the heaven and the earth.",
    "And the LORD said unto Moses,",
    "  leading spaces, trailing spaces   ",
    "tabs\tand\nnewlines\n\nand  double  spaces",
    "Numbers 3:16 and 144,000 and 1611",
    "don't can't I'm we've they'll he'd it's O'Neil 'quoted'",
    "Unicode: caf\u00e9 na\u00efve \u00c5ngstr\u00f6m \u2014 \u201cquotes\u201d \u2018x\u2019",
    "Greek \u0391\u03b2\u03b3 Hebrew \u05e9\u05dc\u05d5\u05dd CJK \u4e2d\u6587 emoji \U0001F600\U0001F64F",
    "symbols: <>&|#$%^*()[]{}~`_+=\\/",
    "<s> and </s> and <unk> typed as text",
    "x",
    " ",
    "UPPER lower MiXeD",
]

JS = r"""
import { Tokenizer } from "@huggingface/tokenizers";
import fs from "node:fs";
const [tokPath, cfgPath, inPath, outPath] = process.argv.slice(2);
const tok = new Tokenizer(JSON.parse(fs.readFileSync(tokPath, "utf8")),
                          JSON.parse(fs.readFileSync(cfgPath, "utf8")));
const texts = JSON.parse(fs.readFileSync(inPath, "utf8"));
const out = texts.map((t) => {
  const enc = tok.encode(t);
  return { ids: enc.ids, decoded: tok.decode(enc.ids, { skip_special_tokens: true }) };
});
fs.writeFileSync(outPath, JSON.stringify(out));
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="directory with tokenizer.json and tokenizer_config.json")
    ap.add_argument("--npm-dir", default="/tmp/tok", help="scratch dir where @huggingface/tokenizers is installed")
    ap.add_argument("--work", default="/tmp/kjv-llama-6m-work")
    args = ap.parse_args()

    tok_json = os.path.abspath(os.path.join(args.model, "tokenizer.json"))
    cfg_json = os.path.abspath(os.path.join(args.model, "tokenizer_config.json"))
    pkg = os.path.join(args.npm_dir, "node_modules", "@huggingface", "tokenizers", "package.json")
    if not os.path.exists(pkg):
        sys.exit("install the JS library first: mkdir -p %s && cd %s && npm init -y && "
                 "npm install --no-save @huggingface/tokenizers@0.2.0" % (args.npm_dir, args.npm_dir))
    with open(pkg) as f:
        js_version = json.load(f)["version"]

    texts = ensure_data(args.work) + EXTRA
    # Avoid strings that the JS added-token splitter would treat as special tokens for the
    # id comparison: "<s>" typed in text is encoded as the special token by HF tokenizers
    # (JS and Rust alike) but as plain bytes by bpe.py, so compare those by round-trip only.
    py = bpe.Tokenizer.from_file(tok_json)

    in_path = os.path.join(args.npm_dir, "kjv_verify_in.json")
    out_path = os.path.join(args.npm_dir, "kjv_verify_out.json")
    js_path = os.path.join(args.npm_dir, "kjv_verify.mjs")
    with open(in_path, "w", encoding="utf-8") as f:
        json.dump(texts, f, ensure_ascii=False)
    with open(js_path, "w") as f:
        f.write(JS)
    subprocess.run(["node", js_path, tok_json, cfg_json, in_path, out_path], check=True, cwd=args.npm_dir)
    with open(out_path, encoding="utf-8") as f:
        js = json.load(f)

    n_rt_js = n_ids = n_rt_py = n_special = 0
    mismatches = []
    total_tokens = 0
    for text, r in zip(texts, js):
        has_special_text = any(s in text for s in bpe.SPECIAL_TOKENS)
        py_ids = py.encode(text, add_bos=True)
        total_tokens += len(py_ids)
        expected = text
        if has_special_text:  # HF (JS and Rust) treat "<s>" etc. in text as special tokens,
            for sp in bpe.SPECIAL_TOKENS:  # which skip_special_tokens then drops
                expected = expected.replace(sp, "")
        if r["decoded"] == expected:
            n_rt_js += 1
        else:
            mismatches.append(("js-roundtrip", text, r["decoded"]))
        if py.decode(py_ids) == text:
            n_rt_py += 1
        else:
            mismatches.append(("py-roundtrip", text, py.decode(py_ids)))
        if has_special_text:
            n_special += 1  # see note above; checked by round-trip only
        elif r["ids"] == py_ids:
            n_ids += 1
        else:
            mismatches.append(("ids", text, (r["ids"][:20], py_ids[:20])))
    n = len(texts)
    print("@huggingface/tokenizers %s: %d texts (%d KJV verses + %d extra), %d tokens" % (
        js_version, n, n - len(EXTRA), len(EXTRA), total_tokens))
    print("  JS encode->decode round-trip: %d/%d" % (n_rt_js, n))
    print("  Python encode->decode round-trip: %d/%d" % (n_rt_py, n))
    print("  JS ids == Python ids: %d/%d (%d text(s) containing '<s>'-like special strings "
          "checked by round-trip only)" % (n_ids, n - n_special, n_special))
    sample = "In the beginning God created the heaven and the earth."
    print("  sample: %r -> %s" % (sample, py.encode(sample)))
    for m in mismatches[:10]:
        print("  MISMATCH", m)
    if mismatches:
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
