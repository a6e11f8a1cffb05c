#!/usr/bin/env bash
# The lead's one-call GPU run: GPU executor equality tests, kiln bench (latency) on the
# Llama-3-8B bf16 dummy engine at batch 1/8/32/64 and ISL 2048, throughput cases, and the
# HF transformers peer on the same shape. Logs to $OUT; prints a table last.
#   here:   bench/h100_run.sh --stage build-cuda      (binaries, libs, fixtures -> .carry/)
#   device: bench/h100_run.sh                          (run tool, carry [".carry"])
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--stage" ]]; then
  b="${2:-build-cuda}"
  rm -rf .carry && mkdir -p .carry/lib .carry/shared/fixtures/hf-tiny .carry/shared/models/stories260K .carry/shared/configs
  cp "$b/kiln" "$b/tests/kiln_tests" .carry/ && strip .carry/kiln .carry/kiln_tests
  ldd .carry/kiln .carry/kiln_tests | awk '/=> \// {print $3}' | sort -u |
    grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt|libcuda|libcublas|libcublasLt|libcudart)\.so' |
    xargs -r -I{} cp -L {} .carry/lib/
  cp -r ../shared/fixtures/stories260K-hf .carry/shared/fixtures/
  cp -r ../shared/fixtures/hf-tiny/llama .carry/shared/fixtures/hf-tiny/
  cp ../shared/models/stories260K/tok512.model ../shared/models/stories260K/tok512.bin .carry/shared/models/stories260K/
  cp ../shared/configs/llama-3-8b.json .carry/shared/configs/
  .carry/kiln build --config ../shared/configs/llama-3-8b.json --dummy-weights --dtype bf16 --out .carry/l3-8b >/dev/null
  du -sh .carry
  exit 0
fi
OUT=${OUT:-/tmp/kiln_h100}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/.carry/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
K=.carry/kiln
E=.carry/l3-8b
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
date -u | tee -a "$OUT/gpu.txt"
# kiln_tests reads fixtures at its compiled-in path /work/main/../shared.
mkdir -p /work/main && ln -sfn "$PWD/.carry/shared" /work/shared
# SECTIONS picks the parts (default: tests latency tp_short hf): tests sanitizer latency tp_128 tp_short tp_miss
# tp_long hf. QUICK=1 trims the latency list, QUICK=2 to batch 1 only (and no split-K test rerun). Raw JSON goes to $OUT/raw (merged into
# $OUT/results.json at the end: the device tool returns at most 8 files).
SECTIONS=" ${SECTIONS:-tests latency tp_short hf} "
QUICK=${QUICK:-0}
R="${RAW:-$OUT/raw}"
mkdir -p "$R"
on() { [[ "$SECTIONS" == *" $1 "* ]]; }
GPU_TESTS='*Cuda*:*ExecutorGpu*:*StepGraphs*'
if on tests; then
  echo "== GPU tests: CUDA ops vs the CPU oracle, executor equality, step graphs, device sampling"
  timeout 300 .carry/kiln_tests --gtest_filter="$GPU_TESTS" > "$OUT/tests.log" 2>&1
  echo "kiln_tests exit $?" >> "$OUT/tests.log"
  [[ $QUICK == 2 ]] || KILN_CUDA_PREFILL_ATTN=0 timeout 120 .carry/kiln_tests --gtest_filter='*Attention*' > "$OUT/tests_splitk.log" 2>&1
  echo "kiln_tests (split-K only) exit $?" >> "$OUT/tests_splitk.log"
  grep -hE "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED|exit [0-9]|graphs recorded|diverged" "$OUT"/tests*.log | sort | uniq -c | sort -rn | head -40
fi
if on latency; then
  echo "== kiln bench (latency)"
  lat() {  # batch isl osl tag [env...]
    local b=$1 i=$2 o=$3 tag=$4; shift 4
    env "$@" timeout 150 $K bench --engine $E --device cuda --batch $b --isl $i --osl $o --iterations 3 --json \
      > "$R/lat_b${b}_isl${i}${tag}.json" 2>> "$OUT/err.log" || echo "bench failed: $b $i $o $tag"
  }
  lat 1 128 256 ""
  [[ $QUICK != 0 ]] || lat 1 128 256 "_nograph" KILN_CUDA_GRAPHS=0
  [[ $QUICK == 2 ]] || lat 1 128 256 "_fusedall" KILN_CUDA_FUSED_GATED=1 KILN_CUDA_FUSED_RESIDUAL=1
  [[ $QUICK == 2 ]] || lat 1 128 256 "_nofused" KILN_CUDA_FUSED_GATED=0 KILN_CUDA_FUSED_RESIDUAL=0
  [[ $QUICK == 2 ]] || lat 1 128 256 "_nofold" KILN_CUDA_FOLD_NORM=0
  lat 1 2048 8 ""
  [[ $QUICK == 2 ]] || lat 8 128 64 ""
  [[ $QUICK == 2 ]] || lat 32 128 64 ""
  [[ $QUICK == 2 ]] || lat 64 128 64 ""
fi
tp() {  # isl osl requests timeout [flags...]; TP_TAG names the variant, STEPLOG=1 keeps a step log
  local i=$1 o=$2 n=$3 t=$4; shift 4
  local name="tp_${i}_${o}${TP_TAG:-}"
  local log=""; [[ "${STEPLOG:-0}" == 1 ]] && log="$R/steps/$name.csv" && mkdir -p "$R/steps"
  KILN_STEP_LOG="$log" timeout "$t" $K bench --mode throughput --engine $E --device cuda --isl $i --osl $o \
    --num-requests $n --disable-prefix-caching --json "$@" > "$R/$name.json" 2>> "$OUT/err.log" || echo "throughput failed: $name"
}
TP_FLAGS=${TP_FLAGS:---max-batch-size 512 --max-num-tokens 16384}
if on tp_miss; then  # the cases TensorRT-LLM's figures were missed on, under TP_FLAGS
  echo "== kiln bench (throughput: 2048/128, 1000/1000, 2048/2048)"
  tp 2048 128 1000 110 $TP_FLAGS
  tp 1000 1000 1000 170 $TP_FLAGS
  tp 2048 2048 200 150 $TP_FLAGS
fi
if on tp_128; then  # the two 128-token-prompt cases alone
  tp 128 128 1000 60 $TP_FLAGS
  tp 128 2048 200 90 $TP_FLAGS
fi
if on tp_short; then
  echo "== kiln bench (throughput: 128/128, 128/2048, 2048/128)"
  [[ $QUICK == 1 ]] || tp 128 128 1000 60 $TP_FLAGS
  [[ $QUICK == 1 ]] || tp 128 2048 200 90 $TP_FLAGS
  tp 2048 128 1000 110 $TP_FLAGS
fi
if on tp_long; then
  echo "== kiln bench (throughput: 2048/2048, 1000/1000)"
  tp 2048 2048 200 150 $TP_FLAGS
  tp 1000 1000 1000 180 $TP_FLAGS
fi
if on hf; then
  echo "== HF transformers peer"
  P=.carry/shared/configs/llama-3-8b.json
  timeout 150 python3 bench/peers/hf_generate.py --config $P --batch 1 --isl 128 --osl 256 --iterations 1 > "$R/hf_b1.json" 2>> "$OUT/err.log"
  timeout 100 python3 bench/peers/hf_generate.py --config $P --batch 64 --isl 128 --osl 64 --iterations 1 > "$R/hf_b64.json" 2>> "$OUT/err.log"
fi
if on sanitizer; then
  echo "== compute-sanitizer memcheck over the CUDA op tests"
  timeout ${SANITIZER_TIMEOUT:-240} /usr/local/cuda/bin/compute-sanitizer --tool memcheck --error-exitcode 9 .carry/kiln_tests \
    --gtest_filter='CudaOps*:*CudaDecode*:*CudaPrefill*:*CudaSampl*:*CudaOpsUpload*' > "$OUT/memcheck.log" 2>&1
  echo "memcheck exit $?" | tee -a "$OUT/memcheck.log"
  grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/memcheck.log" | tail -5
fi
[[ -d "$R/steps" ]] && tar czf "$OUT/steps.tgz" -C "$R" steps
python3 - "$OUT" <<'PY'
import json, sys, glob, os
out = sys.argv[1]
def load(p):
    try: return json.load(open(p))
    except Exception: return None
raw = os.environ.get("RAW", out + "/raw")
merged = {os.path.basename(f)[:-5]: load(f) for f in sorted(glob.glob(raw + "/*.json")) if os.path.basename(f) != "results.json"}
json.dump(merged, open(out + "/results.json", "w"), indent=1)
print("\n%-22s %9s %9s %10s %9s %7s" % ("kiln bench (latency)", "TTFT ms", "step ms", "tok/s", "GB/s", "%copy"))
for f in sorted(glob.glob(raw + "/lat_*.json")):
    j = load(f)
    if not j: continue
    print("%-22s %9.2f %9.3f %10.1f %9.0f %6.1f%%" % (os.path.basename(f)[4:-5], j["ttft_ms"],
          j["tpot_ms"], j["decode_tokens_per_s"], j["weight_stream_gbs"], j["pct_of_copy_bandwidth"]))
    if "single_request" in j:
        s = j["single_request"]
        print("%-22s %9.2f %9.3f %10.1f %9.0f %6.1f%%  executor/single %.3f" % ("  single-request path", s["ttft_ms"],
              1000 / max(s["decode_tokens_per_s"], 1e-9), s["decode_tokens_per_s"], s["weight_stream_gbs"], s["pct_of_copy_bandwidth"], s["executor_vs_single"]))
for f in sorted(glob.glob(raw + "/tp_*.json")):
    j = load(f)
    if j: print("throughput %-22s %9.1f out tok/s  %6.2f req/s  %7.1f s  steps %d  preempted %d  TTFT p50 %.0f ms  TPOT p50 %.2f ms  failed %d" % (
        os.path.basename(f)[3:-5], j["output_tokens_per_s"], j["requests_per_s"], j["elapsed_s"], j["steps"],
        j.get("preemptions", -1), j["ttft_ms"]["p50"], j["tpot_ms"]["p50"], j["failed"]))
for f in ("hf_b1.json", "hf_b64.json"):
    j = load(raw + "/" + f)
    if j: print("HF %s: ttft %.1f ms, decode %.1f tok/s" % (f, j["ttft_ms"], j["decode_tokens_per_s"]))
PY
