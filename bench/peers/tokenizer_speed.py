#!/usr/bin/env python3
"""Encode the same corpus with kiln and with HF `tokenizers` (pip) on one thread; print both rates.

kiln is timed in-process through `kiln tokenize --file CORPUS --bench N` (load time excluded, as for HF).
The ids are compared first, so the figures are for identical output.

  python3 bench/peers/tokenizer_speed.py [--kiln build/kiln] [--tokenizer ../shared/tokenizers/llama3]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # HF tokenizers: one thread
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(ROOT, "..", "shared")


def build_corpus(min_bytes):
    parts = []
    for p in sorted(glob.glob(os.path.join(SHARED, "models", "stories260K", "reference_*n256.txt"))):
        if "tokens" not in p:
            parts.append(open(p, encoding="utf-8").read())
    golden = os.path.join(SHARED, "fixtures", "tokenizer-golden.json")
    if os.path.exists(golden):
        g = json.load(open(golden, encoding="utf-8"))["tokenizers"]["gpt2"]["cases"]
        parts += [c["text"] for c in g]
    for p in sorted(glob.glob(os.path.join(SHARED, "tokenizers", "*", "test-vectors.inp"))):
        parts.append(open(p, encoding="utf-8").read().replace("\n__ggml_vocab_test__\n", "\n"))
    base = "\n".join(parts)
    if not base:
        sys.exit("no corpus text found under " + SHARED)
    out = base
    while len(out.encode()) < min_bytes:
        out += "\n" + base
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default=next((p for p in [os.path.join(ROOT, "build", "kiln"), os.path.join(ROOT, "build-tok", "kiln")]
                                            if os.path.exists(p)), "kiln"))
    ap.add_argument("--tokenizer", default=os.path.join(SHARED, "tokenizers", "llama3"))
    ap.add_argument("--mb", type=float, default=1.0, help="corpus size in MB")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()

    from tokenizers import Tokenizer  # pip install tokenizers

    text = build_corpus(int(a.mb * 1e6))
    nbytes = len(text.encode())
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write(text)
        corpus = f.name
    try:
        hf = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
        hf.no_truncation()  # some saved tokenizer.json files carry a truncation setting
        hf.no_padding()
        hf_ids = hf.encode(text, add_special_tokens=False).ids
        kiln_ids = json.loads(subprocess.check_output([a.kiln, "tokenize", "--tokenizer", a.tokenizer, "--file", corpus]))
        same = kiln_ids == hf_ids
        # Cold: a fresh tokenizer, one encode (word caches start empty).
        hf_cold = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
        hf_cold.no_truncation()
        t0 = time.perf_counter()
        hf_cold.encode(text, add_special_tokens=False)
        hf_cold_s = time.perf_counter() - t0
        kiln_cold_s = json.loads(subprocess.check_output([a.kiln, "tokenize", "--tokenizer", a.tokenizer, "--file",
                                                          corpus, "--bench", "1"]))["seconds"]
        t0 = time.perf_counter()
        for _ in range(a.repeat):
            hf.encode(text, add_special_tokens=False)
        hf_s = (time.perf_counter() - t0) / a.repeat
        r = json.loads(subprocess.check_output([a.kiln, "tokenize", "--tokenizer", a.tokenizer, "--file", corpus,
                                                "--bench", str(a.repeat)]))
        kiln_s = r["seconds"] / a.repeat
    finally:
        os.unlink(corpus)
    print(f"tokenizer: {a.tokenizer}")
    print(f"corpus: {nbytes / 1e6:.2f} MB, {len(hf_ids)} tokens; ids identical: {same}")
    print(f"kiln (warm):       {nbytes / kiln_s / 1e6:7.2f} MB/s  {len(hf_ids) / kiln_s / 1e6:6.3f} M tokens/s (1 thread)")
    print(f"HF tokenizers {__import__('tokenizers').__version__} (warm): {nbytes / hf_s / 1e6:7.2f} MB/s  {len(hf_ids) / hf_s / 1e6:6.3f} M tokens/s (1 thread)")
    print(f"cold (first encode, empty caches): kiln {nbytes / kiln_cold_s / 1e6:.2f} MB/s, "
          f"HF {nbytes / hf_cold_s / 1e6:.2f} MB/s")
    if not same:
        first = next((i for i, (x, y) in enumerate(zip(kiln_ids, hf_ids)) if x != y), min(len(kiln_ids), len(hf_ids)))
        print(f"WARNING: ids differ (kiln {len(kiln_ids)} vs HF {len(hf_ids)} tokens, first difference at {first})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
