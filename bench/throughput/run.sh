#!/usr/bin/env bash
# Offline throughput of the in-flight batching executor (issue 5) on the Llama-3-8B bf16 dummy
# engine, the trtllm-bench way: fixed-length requests, random prompt ids, ignore-EOS, greedy.
# Cases (ISL/OSL): 128/128, 128/2048, 2048/128, 2048/2048, 1000/1000; 1,000 requests for the short
# outputs, 200 for the 2048-token ones (--quick: 200 / 50, to save device time).
#
# Stage on the build machine (no GPU needed):  scripts/gpu_check.sh --stage build-cuda
#   (puts .carry/kiln and .carry/engines/llama-3-8b.bf16 in place)
# Run on the GPU machine (repository root):    bench/throughput/run.sh [--quick] [extra kiln flags]
# One JSON report per case goes to $OUT (or /tmp/kiln_throughput); a summary table is printed last.
set -uo pipefail
cd "$(dirname "$0")/../.."
quick=0
if [[ "${1:-}" == "--quick" ]]; then quick=1; shift; fi
kiln="${KILN:-.carry/kiln}"
engine="${ENGINE:-.carry/engines/llama-3-8b.bf16}"
out="${OUT:-/tmp/kiln_throughput}"
mkdir -p "$out"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}:$PWD/.carry/lib"
[[ -x "$kiln" ]] || { echo "no kiln binary at $kiln (stage first)"; exit 1; }
[[ -d "$engine" ]] || { echo "no engine at $engine (stage first)"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null | tee "$out/card.txt"

cases="${CASES:-128:128:1000 128:2048:200 2048:128:1000 2048:2048:200 1000:1000:1000}"
printf "%-10s %8s %14s %10s %12s %12s\n" "ISL/OSL" "requests" "output tok/s" "req/s" "TTFT p50 ms" "TPOT p50 ms" > "$out/summary.txt"
for c in $cases; do
  IFS=: read -r isl osl n <<< "$c"
  if [[ $quick == 1 ]]; then n=$(( osl >= 2048 ? 50 : 200 )); fi
  json="$out/throughput_${isl}_${osl}.json"
  echo "== ISL $isl / OSL $osl, $n requests"
  "$kiln" bench --mode throughput --engine "$engine" --device "${DEVICE:-cuda}" --isl "$isl" --osl "$osl" --num-requests "$n" \
    --max-seq-len "${MAX_SEQ_LEN:-4096}" --json "$@" > "$json" 2> "$out/throughput_${isl}_${osl}.log"
  rc=$?
  tail -3 "$out/throughput_${isl}_${osl}.log"
  if [[ $rc != 0 ]]; then echo "   failed (rc $rc)"; continue; fi
  python3 - "$json" "$isl/$osl" "$n" >> "$out/summary.txt" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<10} {sys.argv[3]:>8} {j['output_tokens_per_s']:>14.1f} {j['requests_per_s']:>10.3f} "
      f"{j['ttft_ms']['p50']:>12.1f} {j['tpot_ms']['p50']:>12.2f}")
PY
done
echo
echo "TensorRT-LLM v0.14 FP16 H100 (published): 128/128 15,572; 128/2048 9,151; 2048/128 1,904; 2048/2048 4,160; 1000/1000 7,055"
cat "$out/summary.txt"
