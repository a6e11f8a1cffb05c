#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) in build-fuzz with clang and runs each for a bounded
# time, seeded with the real fixture files (and the real chat templates) plus tiny synthetic files and
# the request and template seeds in tests/fuzz/seeds. Fails on any crash.
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_TARGETS   subset, e.g. "gguf llama2c" (default: safetensors gguf llama2c chat_template openai_request
#                  tokenizer; tokenizer needs the shared fixtures' tokenizer.json files)
#   KILN_SHARED_DIR  fixtures root (default: ./shared or ../shared)
#   FUZZ_JOBS      build parallelism (default 2)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
TARGETS="${FUZZ_TARGETS:-safetensors gguf llama2c chat_template openai_request tokenizer}"
BUILD="$ROOT/build-fuzz"
SHARED="${KILN_SHARED_DIR:-}"
if [[ -z "$SHARED" ]]; then
  for d in "$ROOT/shared" "$ROOT/../shared"; do [[ -d "$d/fixtures" ]] && SHARED="$d" && break; done
fi

# Standalone configure (the parsers need only clang + nlohmann-json), so the root project's
# dependencies (sentencepiece, CUDA, ...) are not needed for fuzzing.
cmake -S tests/fuzz -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang >/dev/null
cmake --build "$BUILD" -j"${FUZZ_JOBS:-2}" --target $(for t in $TARGETS; do printf 'fuzz_%s ' "$t"; done)

# Seed corpora: real files when the fixtures are there, and small synthetic ones always (small
# inputs mutate much faster than the 1 MB real files).
CORPUS="$BUILD/corpus"
rm -rf "$CORPUS"
mkdir -p "$CORPUS"/{safetensors,gguf,llama2c,chat_template,openai_request,tokenizer}
cp tests/fuzz/seeds/*.jinja "$CORPUS/chat_template/"
cp tests/fuzz/seeds/openai_request_*.json "$CORPUS/openai_request/"
cp tests/fuzz/seeds/tokenizer_*.txt tests/fuzz/seeds/tokenizer_gguf_*.json "$CORPUS/tokenizer/"
if [[ -n "$SHARED" ]]; then
  cp "$SHARED/fixtures/stories260K-hf/model.safetensors" "$CORPUS/safetensors/" 2>/dev/null || true
  for f in "$SHARED"/fixtures/hf-tiny/llama/model.safetensors "$SHARED"/fixtures/lora/*/adapter_model.safetensors; do
    [[ -f "$f" ]] && cp "$f" "$CORPUS/safetensors/$(basename "$(dirname "$f")").safetensors"
  done
  cp "$SHARED/models/stories260K/stories260K.gguf" "$CORPUS/gguf/" 2>/dev/null || true
  # (not the ggml-vocab files: 30k-50k-token vocabularies make each execution ~100x slower)
  # Chat templates of real models: tokenizer_config.json "chat_template" (a string or named
  # templates), chat_template*.json and *.jinja files.
  python3 - "$SHARED/tokenizers" "$CORPUS/chat_template" <<'PY' || true
import glob, json, os, sys
src, out = sys.argv[1], sys.argv[2]
found = []
for f in glob.glob(f"{src}/*/tokenizer_config.json") + glob.glob(f"{src}/*/*chat_template*.json"):
    try:
        ct = json.load(open(f)).get("chat_template")
    except Exception:
        continue
    found += [e.get("template") for e in ct] if isinstance(ct, list) else [ct]
found += [open(f).read() for f in glob.glob(f"{src}/*/*.jinja")]
for i, t in enumerate(x for x in found if isinstance(x, str) and x):
    open(os.path.join(out, f"model_{i}.jinja"), "w").write(t)
PY
  # Small tokenizer.json documents for fuzz_tokenizer's loader path: the real ones with their
  # vocabularies cut to 300 entries (and the merges among those), so each run stays fast.
  python3 - "$SHARED/tokenizers" "$CORPUS/tokenizer" <<'PY' || true
import json, os, sys
src, out = sys.argv[1], sys.argv[2]
for name in ("gpt2", "llama2", "llama3", "qwen2.5", "chatglm3"):
    try:
        j = json.load(open(f"{src}/{name}/tokenizer.json"))
    except Exception:
        continue
    m = j["model"]
    order = sorted(m["vocab"].items(), key=lambda kv: kv[1])[:300]
    m["vocab"] = {k: i for i, (k, _) in enumerate(order)}
    merges = []
    for mg in m.get("merges", []):
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        if a in m["vocab"] and b in m["vocab"] and a + b in m["vocab"]:
            merges.append(mg)
    m["merges"] = merges[:200]
    j["added_tokens"] = [dict(t, id=300 + i) for i, t in enumerate(j.get("added_tokens", [])[:4])]
    open(os.path.join(out, f"doc_{name}.json"), "w").write(json.dumps(j, ensure_ascii=False))
PY
  cp "$SHARED/models/stories260K/stories260K.bin" "$SHARED/models/stories260K/stories260K_v1.bin" \
    "$CORPUS/llama2c/" 2>/dev/null || true
else
  echo "run_fuzzers: no shared fixtures found; using synthetic seeds only" >&2
fi
python3 - "$CORPUS" <<'PY'
import json, struct, sys
c = sys.argv[1]
def f32(n, base=0.0): return struct.pack(f"<{n}f", *[base + 0.01 * i for i in range(n)])
# llama2.c legacy (dim 4, hidden 6, 1 layer, 2 heads, 1 kv head, vocab 5, seq 2) and v1 variants.
dim, hid, L, H, KV, V, S = 4, 6, 1, 2, 1, 5, 2
hd = dim // H
body = f32(V*dim) + f32(L*dim) + f32(L*dim*dim) + f32(2*L*KV*hd*dim) + f32(L*dim*dim) + f32(L*dim) + \
       f32(3*L*hid*dim) + f32(dim)
open(f"{c}/llama2c/tiny_legacy.bin", "wb").write(struct.pack("<7i", dim, hid, L, H, KV, V, S) + body + f32(S*hd))
open(f"{c}/llama2c/tiny_legacy_unshared.bin", "wb").write(
    struct.pack("<7i", dim, hid, L, H, KV, -V, S) + body + f32(S*hd) + f32(V*dim))
hdr = struct.pack("<Ii7iB", 0x616b3432, 1, dim, hid, L, H, KV, V, S, 1)
open(f"{c}/llama2c/tiny_v1.bin", "wb").write(hdr + b"\0" * (256 - len(hdr)) + body)
# safetensors
hdr = json.dumps({"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                  "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]}}).encode()
open(f"{c}/safetensors/tiny.safetensors", "wb").write(struct.pack("<Q", len(hdr)) + hdr + bytes(22))
# GGUF: a tiny llama (hidden 4, 2 heads, 1 kv head, ffn 6, vocab 5, 1 block).
def s(x): x = x.encode(); return struct.pack("<Q", len(x)) + x
kv = [("general.architecture", 8, s("llama")), ("llama.embedding_length", 4, struct.pack("<I", 4)),
      ("llama.block_count", 4, struct.pack("<I", 1)), ("llama.attention.head_count", 4, struct.pack("<I", 2)),
      ("llama.attention.head_count_kv", 4, struct.pack("<I", 1)), ("llama.feed_forward_length", 4, struct.pack("<I", 6)),
      ("llama.rope.freq_base", 6, struct.pack("<f", 10000.0)),
      ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 5) + b"".join(s(t) for t in "abcde"))]
tensors = [("token_embd.weight", [4, 5]), ("output_norm.weight", [4]), ("blk.0.attn_q.weight", [4, 4]),
           ("blk.0.attn_k.weight", [4, 2]), ("blk.0.attn_v.weight", [4, 2]), ("blk.0.attn_output.weight", [4, 4]),
           ("blk.0.attn_norm.weight", [4]), ("blk.0.ffn_gate.weight", [4, 6]), ("blk.0.ffn_up.weight", [4, 6]),
           ("blk.0.ffn_down.weight", [6, 4]), ("blk.0.ffn_norm.weight", [4])]
out = struct.pack("<IIQQ", 0x46554747, 3, len(tensors), len(kv))
for k, t, v in kv: out += s(k) + struct.pack("<I", t) + v
data, off = b"", 0
for name, dims in tensors:
    n = 1
    for d in dims: n *= d
    out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", 0, off)
    blob = f32(n); blob += b"\0" * (-len(blob) % 32)
    data += blob; off += len(blob)
out += b"\0" * (-len(out) % 32)
open(f"{c}/gguf/tiny_llama.gguf", "wb").write(out + data)
PY

# The real tokenizers fuzz_tokenizer encodes with (byte-level BPE, SentencePiece-style BPE, Qwen's
# NFC + split, ChatGLM's); without the fixtures that target is skipped.
KILN_FUZZ_TOKENIZERS=""
if [[ -n "$SHARED" ]]; then
  for m in llama3 llama2 gpt2 qwen2.5 phi3 chatglm3; do
    f="$SHARED/tokenizers/$m/tokenizer.json"
    [[ -f "$f" ]] && KILN_FUZZ_TOKENIZERS="${KILN_FUZZ_TOKENIZERS:+$KILN_FUZZ_TOKENIZERS:}$f"
  done
fi
export KILN_FUZZ_TOKENIZERS

status=0
for t in $TARGETS; do
  if [[ $t == tokenizer && -z "$KILN_FUZZ_TOKENIZERS" ]]; then
    echo "== fuzz_tokenizer skipped: no tokenizer.json fixtures found"
    continue
  fi
  work="$BUILD/run_$t"
  rm -rf "$work" && mkdir -p "$work/corpus"
  echo "== fuzz_$t for ${SECONDS_EACH}s (seeds: $(ls "$CORPUS/$t" | wc -l))"
  # The live corpus is a scratch copy; crashes land in $work as crash-*.
  dict=()
  [[ -f "tests/fuzz/$t.dict" ]] && dict=(-dict="$ROOT/tests/fuzz/$t.dict")
  if ! (cd "$work" && "$BUILD/fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=4096 \
        -max_len=2097152 -print_final_stats=1 "${dict[@]}" corpus "$CORPUS/$t" >"$work/log.txt" 2>&1); then
    echo "!! fuzz_$t FAILED; see $work/log.txt and $work/crash-*"
    grep -E "ERROR|SUMMARY|crash-|Test unit written" "$work/log.txt" | head -20 || true
    status=1
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE" "$work/log.txt" | tr '\n' ' '
  echo
done
exit $status
