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
# SECTIONS picks the parts (default all): tests latency throughput hf; QUICK=1 trims each.
SECTIONS=" ${SECTIONS:-tests latency throughput hf} "
QUICK=${QUICK:-0}
on() { [[ "$SECTIONS" == *" $1 "* ]]; }
if on tests; then
echo "== GPU executor equality tests, step graphs"
timeout 200 .carry/kiln_tests --gtest_filter='*ExecutorGpu*:*StepGraphs*:*CudaSampl*' 2>&1 |
  grep -E "^\[  |Failure|diverg|graphs recorded|Expected|Which is" | tail -30 | tee "$OUT/tests.txt"
fi
if on latency; then
echo "== kiln bench (latency)"
lat() {  # batch isl osl tag [env...]
  local b=$1 i=$2 o=$3 tag=$4; shift 4
  env "$@" timeout 150 $K bench --engine $E --device cuda --batch $b --isl $i --osl $o --iterations 3 --json \
    > "$OUT/lat_b${b}_isl${i}${tag}.json" 2>> "$OUT/err.log" || echo "bench failed: $b $i $o $tag"
}
lat 1 128 256 ""
lat 1 128 256 "_nograph" KILN_CUDA_GRAPHS=0
lat 1 2048 8 ""
lat 8 128 64 ""
[[ $QUICK == 1 ]] || lat 32 128 64 ""
lat 64 128 64 ""
fi
if on throughput; then
echo "== kiln bench (throughput)"
tp() { timeout "$5" $K bench --mode throughput --engine $E --device cuda --isl $1 --osl $2 --num-requests $3 \
         --max-batch-size $4 --json ${6:-} > "$OUT/tp_$1_$2_b$4.json" 2>> "$OUT/err.log" || echo "throughput failed: $1/$2"; }
tp 128 128 1000 256 90
tp 128 128 1000 512 90 "--max-num-tokens 16384"
[[ $QUICK == 1 ]] || tp 2048 128 200 128 90
fi
if on hf; then
echo "== HF transformers peer"
P=.carry/shared/configs/llama-3-8b.json
timeout 150 python3 bench/peers/hf_generate.py --config $P --batch 1 --isl 128 --osl 256 --iterations 1 > "$OUT/hf_b1.json" 2>> "$OUT/err.log"
timeout 100 python3 bench/peers/hf_generate.py --config $P --batch 64 --isl 128 --osl 64 --iterations 1 > "$OUT/hf_b64.json" 2>> "$OUT/err.log"
fi
python3 - "$OUT" <<'PY'
import json, sys, glob, os
out = sys.argv[1]
def load(p):
    try: return json.load(open(p))
    except Exception: return None
print("\n%-22s %9s %9s %10s %9s %7s" % ("kiln bench (latency)", "TTFT ms", "step ms", "tok/s", "GB/s", "%copy"))
for f in sorted(glob.glob(out + "/lat_*.json")):
    j = load(f)
    if not j: continue
    print("%-22s %9.2f %9.3f %10.1f %9.0f %6.1f%%" % ("b%d isl%d osl%d" % (j["batch"], j["isl"], j["osl"]), j["ttft_ms"],
          j["tpot_ms"], j["decode_tokens_per_s"], j["weight_stream_gbs"], j["pct_of_copy_bandwidth"]))
    if "single_request" in j:
        s = j["single_request"]
        print("%-22s %9.2f %9.3f %10.1f %9.0f %6.1f%%  executor/single %.3f" % ("  single-request path", s["ttft_ms"],
              1000 / max(s["decode_tokens_per_s"], 1e-9), s["decode_tokens_per_s"], s["weight_stream_gbs"], s["pct_of_copy_bandwidth"], s["executor_vs_single"]))
for f in sorted(glob.glob(out + "/tp_*.json")):
    j = load(f)
    if j: print("throughput %s: %s" % (os.path.basename(f), json.dumps({k: v for k, v in j.items() if not isinstance(v, (dict, list))})[:300]))
for f in ("hf_b1.json", "hf_b64.json"):
    j = load(out + "/" + f)
    if j: print("HF %s: ttft %.1f ms, decode %.1f tok/s" % (f, j["ttft_ms"], j["decode_tokens_per_s"]))
PY
