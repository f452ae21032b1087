#!/usr/bin/python3
"""Dump the King James Version (public domain) to plain text, one verse per line.

Source: Debian packages `bible-kjv-text` (the compressed text /usr/lib/bible.data,
an EC02 compressed/indexed format) and `bible-kjv` (the `bible` reader program).
The data file is not plain text, so we ask the shipped `bible` program to print
every verse from Genesis 1:1 to Revelation 22:21 in its compact format
("Ge1:1 In the beginning ...", one verse per line) and strip the reference.

Output (in --work, default /tmp/kjv-llama-6m-work):
  kjv_verses.txt   31,102 lines, ASCII, one verse per line, no references
  kjv_refs.txt     the matching references (Ge1:1, ...), one per line

Usage:
  /usr/bin/python3 scripts/model/prepare_data.py [--work DIR]
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys

EXPECTED_VERSES = 31102  # verses in the KJV (Protestant canon, 66 books)


def dump_kjv():
    exe = shutil.which("bible") or "/usr/bin/bible"
    if not os.path.exists(exe):
        sys.exit("the `bible` program is missing: apt-get install -y bible-kjv bible-kjv-text")
    # -f: compact format, one verse per line, no wrapping.
    out = subprocess.run([exe, "-f", "Gen1:1-Rev22:21"], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, "COLUMNS": "100000"})
    lines = out.stdout.decode("ascii").split("\n")
    refs, verses = [], []
    for line in lines:
        if not line.strip():
            continue
        ref, _, text = line.partition(" ")
        text = " ".join(text.split())  # normalise internal whitespace
        if not text:
            raise ValueError("empty verse for %r" % ref)
        refs.append(ref)
        verses.append(text)
    if len(verses) != EXPECTED_VERSES:
        raise ValueError("expected %d verses, got %d" % (EXPECTED_VERSES, len(verses)))
    if refs[0] != "Ge1:1" or refs[-1] != "Rev22:21":
        raise ValueError("unexpected first/last reference %s %s" % (refs[0], refs[-1]))
    return refs, verses


def verses_path(work):
    return os.path.join(work, "kjv_verses.txt")


def ensure_data(work):
    """Create the verse file if missing; return the list of verses."""
    path = verses_path(work)
    if not os.path.exists(path):
        os.makedirs(work, exist_ok=True)
        refs, verses = dump_kjv()
        with open(path + ".tmp", "w", encoding="ascii", newline="\n") as f:
            f.write("\n".join(verses) + "\n")
        with open(os.path.join(work, "kjv_refs.txt"), "w", encoding="ascii", newline="\n") as f:
            f.write("\n".join(refs) + "\n")
        os.replace(path + ".tmp", path)
    with open(path, encoding="ascii") as f:
        verses = f.read().split("\n")[:-1]
    assert len(verses) == EXPECTED_VERSES, len(verses)
    return verses


def split_verses(verses, val_fraction=0.05):
    """Held-out split: the LAST val_fraction of verses (in canonical order) is validation."""
    n_val = int(round(len(verses) * val_fraction))
    return verses[:-n_val], verses[-n_val:]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/kjv-llama-6m-work")
    args = ap.parse_args()
    verses = ensure_data(args.work)
    train, val = split_verses(verses)
    path = verses_path(args.work)
    print("wrote %s: %d verses, %d bytes, sha256 %s" % (
        path, len(verses), os.path.getsize(path), sha256_file(path)))
    print("train verses %d, validation verses %d (last 5%%)" % (len(train), len(val)))


if __name__ == "__main__":
    main()
