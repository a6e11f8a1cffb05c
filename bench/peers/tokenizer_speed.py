#!/usr/bin/env python3
"""Encode the same corpus with kiln and with HF `tokenizers` (pip) on one thread; print both rates.

kiln is timed in-process through `kiln tokenize --file CORPUS --bench N` (load time excluded, as for HF).
The ids are compared first, so the figures are for identical output.

  python3 bench/peers/tokenizer_speed.py [--kiln build/kiln] [--tokenizer ../shared/tokenizers/llama3]

--diff N instead runs a differential test: N random strings (mixed scripts, spaces, specials) encoded
and N random id sequences decoded by both, through `kiln tokenize/detokenize --jsonl`; mismatches are printed.
Pass a tokenizer.json FILE to compare pure HF-tokenizers semantics (a folder adds transformers' config).
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


POOL = [" ", "  ", "\n", "\t", "\r\n", "\u00a0", "\u3000", "\u2009", "a", "Z", "é", "ß", "Ω", "中", "文", "日本", "한", "ñ",
        "👍", "🏽", "\u200d", "🚀", "1", "23", "456", "7890", ".", ",", "!", "?", "'s", "'re", "'LL", "--", "...", "(", ")",
        "<", ">", "|", "#", "_", "\u0301", "e\u0301", "ﬁ", "①", "٣", "अ", "ि", "<s>", "</s>", "<|endoftext|>", "<unk>",
        "[INST]", "<|im_start|>", "<|user|>", "Hello", " world", "the", " The", "don't", "I'm", "\x00", "\ufffd"]


def differential(a, hf):
    import random
    random.seed(0)
    texts = ["".join(random.choice(POOL) for _ in range(random.randint(0, 25))) for _ in range(a.diff)]
    vocab = hf.get_vocab_size(with_added_tokens=True)
    seqs = [[random.randrange(vocab) for _ in range(random.randint(0, 12))] for _ in range(a.diff)]
    bad = 0
    with tempfile.TemporaryDirectory() as d:
        tp, sp = os.path.join(d, "t.jsonl"), os.path.join(d, "s.jsonl")
        open(tp, "w").write("\n".join(json.dumps(t) for t in texts) + "\n")
        open(sp, "w").write("\n".join(json.dumps(s) for s in seqs) + "\n")
        enc = subprocess.check_output([a.kiln, "tokenize", "--tokenizer", a.tokenizer, "--jsonl", tp]).decode().splitlines()
        dec = subprocess.check_output([a.kiln, "detokenize", "--tokenizer", a.tokenizer, "--jsonl", sp]).decode().splitlines()
    for t, line in zip(texts, enc):
        want = hf.encode(t, add_special_tokens=False).ids
        if json.loads(line) != want:
            bad += 1
            print("encode mismatch:", repr(t), want, line)
    for s, line in zip(seqs, dec):
        want = hf.decode(s, skip_special_tokens=False)
        if json.loads(line) != want:
            bad += 1
            print("decode mismatch:", s, repr(want), line)
    print(f"differential: {bad} mismatches in {len(texts)} encodes + {len(seqs)} decodes")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default=next((p for p in [os.path.join(ROOT, "build", "kiln"), os.path.join(ROOT, "build-tok", "kiln")]
                                            if os.path.exists(p)), "kiln"))
    ap.add_argument("--tokenizer", default=os.path.join(SHARED, "tokenizers", "llama3"))
    ap.add_argument("--mb", type=float, default=1.0, help="corpus size in MB")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--diff", type=int, default=0, help="run a differential test with N random cases instead")
    a = ap.parse_args()

    from tokenizers import Tokenizer  # pip install tokenizers

    if a.diff:
        path = a.tokenizer if a.tokenizer.endswith(".json") else os.path.join(a.tokenizer, "tokenizer.json")
        hf = Tokenizer.from_file(path)
        hf.no_truncation()
        return differential(a, hf)

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
        # Per line: many short encodes, as a server sees prompts.
        lines = [l for l in text.split("\n") if l]
        lp = corpus + ".jsonl"
        open(lp, "w").write("\n".join(json.dumps(l) for l in lines) + "\n")
        t0 = time.perf_counter()
        for _ in range(a.repeat):
            for l in lines:
                hf.encode(l, add_special_tokens=False)
        hf_line_s = (time.perf_counter() - t0) / a.repeat
        r = json.loads(subprocess.check_output([a.kiln, "tokenize", "--tokenizer", a.tokenizer, "--jsonl", lp,
                                                "--bench", str(a.repeat)]))
        kiln_line_s = r["seconds"] / a.repeat
        os.unlink(lp)
    finally:
        os.unlink(corpus)
    print(f"tokenizer: {a.tokenizer}")
    print(f"corpus: {nbytes / 1e6:.2f} MB, {len(hf_ids)} tokens; ids identical: {same}")
    print(f"kiln (warm):       {nbytes / kiln_s / 1e6:7.2f} MB/s  {len(hf_ids) / kiln_s / 1e6:6.3f} M tokens/s (1 thread)")
    print(f"HF tokenizers {__import__('tokenizers').__version__} (warm): {nbytes / hf_s / 1e6:7.2f} MB/s  {len(hf_ids) / hf_s / 1e6:6.3f} M tokens/s (1 thread)")
    print(f"per line ({len(lines)} encodes of {nbytes / len(lines):.0f} B avg): kiln {nbytes / kiln_line_s / 1e6:.2f} MB/s, "
          f"HF {nbytes / hf_line_s / 1e6:.2f} MB/s (HF timed from Python: includes call overhead)")
    print(f"cold (first encode, empty caches): kiln {nbytes / kiln_cold_s / 1e6:.2f} MB/s, "
          f"HF {nbytes / hf_cold_s / 1e6:.2f} MB/s")
    if not same:
        first = next((i for i, (x, y) in enumerate(zip(kiln_ids, hf_ids)) if x != y), min(len(kiln_ids), len(hf_ids)))
        print(f"WARNING: ids differ (kiln {len(kiln_ids)} vs HF {len(hf_ids)} tokens, first difference at {first})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
