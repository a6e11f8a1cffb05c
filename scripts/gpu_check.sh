#!/usr/bin/env bash
# GPU check for the CUDA backend: the CUDA op tests against the CPU oracle, a compute-sanitizer
# memcheck pass over them, and the GEMV/decode microbenchmark; prints a short table last.
#
# On the build machine (no GPU needed):
#   cmake -S . -B build-cuda -G Ninja -DKILN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90
#   cmake --build build-cuda -j2 --target kiln_cuda_ops_tests kiln_bench_gemv
#   scripts/gpu_check.sh --stage [BUILD_DIR]     # binaries + the shared libraries they need -> .carry/
# On the GPU machine (repository root, .carry/ present):
#   scripts/gpu_check.sh [--no-memcheck] [--no-bench] [--filter GTEST_FILTER]
# Logs go to $OUT (the device tool's output folder) or /tmp/kiln_gpu_check.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--stage" ]]; then
  build="${2:-build-cuda}"
  rm -rf .carry && mkdir -p .carry/lib
  cp "$build/kiln_cuda_ops_tests" "$build/bench/kernels/kiln_bench_gemv" .carry/
  # End-to-end (--e2e): the CLI, engines of every hf-tiny fixture (f32 and bf16), stories260K,
  # a dummy-weight Llama-3-8B engine, and the fixtures' references (built here, CPU only).
  if [[ -x "$build/kiln" ]]; then
    cp "$build/kiln" .carry/
    fx=../shared/fixtures
    mkdir -p .carry/engines .carry/refs
    for d in "$fx"/hf-tiny/*/ "$fx"/stories260K-hf/; do
      a=$(basename "$d")
      dts="f32"  # bf16 for a subset that covers every attention/positional variant (64 MiB carry limit)
      case "$a" in llama|qwen3|gemma2|phi2|phi3|bloom_alibi|mistral_sliding|glm|stories260K-hf) dts="f32 bf16" ;; esac
      for dt in $dts; do
        "$build/kiln" build --checkpoint "$d" --out ".carry/engines/$a.$dt" --dtype "$dt" >/dev/null 2>&1 || echo "build failed: $a $dt"
      done
      mkdir -p ".carry/refs/$a" && cp "$d/reference.json" "$d/reference.safetensors" ".carry/refs/$a/"
    done
    "$build/kiln" build --config ../shared/configs/llama-3-8b.json --dummy-weights --dtype bf16 \
      --out .carry/engines/llama-3-8b.bf16 >/dev/null 2>&1
  fi
  strip .carry/kiln* 2>/dev/null
  # Everything the binaries load except libc/libstdc++/CUDA (the GPU machine has those).
  ldd .carry/kiln_cuda_ops_tests .carry/kiln_bench_gemv | awk '/=> \// {print $3}' | sort -u |
    grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt|libcublas|libcublasLt|libcudart)\.so' |
    xargs -r -I{} cp -L {} .carry/lib/
  du -sh .carry
  exit 0
fi

memcheck=1 bench=1 sweep=0 e2e=0 profile=0 filter='CudaOps*'
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-memcheck) memcheck=0 ;;
    --no-bench) bench=0 ;;
    --gemv-sweep) sweep=1 ;;
    --e2e) e2e=1 ;;
    --profile) profile=1 ;;  # ncu kernel-time breakdown of two Llama-3-8B batch-1 decode steps  # kiln logits/run on the GPU vs the CPU and the HF references; 8B decode timing  # also A/B the GEMV variants (KILN_GEMV_RT=2, KILN_GEMV_M1_MMA=1)
    --filter) filter="$2"; shift ;;
  esac
  shift
done
out="${OUT:-/tmp/kiln_gpu_check}"
mkdir -p "$out"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}:$PWD/.carry/lib"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"

echo "== $(date -u '+%Y-%m-%d %H:%M UTC') $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.total --format=csv,noheader

echo "== op tests"
t0=$(date +%s)
.carry/kiln_cuda_ops_tests --gtest_filter="$filter" >"$out/ops_tests.log" 2>&1
tests_rc=$?
grep -E '^\[  (FAILED|PASSED|SKIPPED) |^\[==========\]|Failure|error|Expected|Which is' "$out/ops_tests.log" | head -80
echo "op tests: rc=$tests_rc, $(( $(date +%s) - t0 )) s"

if [[ $bench == 1 ]]; then
  echo "== GEMV microbenchmark"
  .carry/kiln_bench_gemv 2>&1 | tee "$out/bench_gemv.log"
fi

if [[ $sweep == 1 ]]; then
  for v in ${SWEEP_VARIANTS:-"KILN_GEMV_RT=2" "KILN_GEMV_M1_MMA=1"}; do
    echo "== GEMV variant: $v"
    env $v .carry/kiln_bench_gemv >"$out/bench_gemv_${v// /_}.log" 2>&1
    grep -E '^[a-z_]+ [0-9]+->[0-9]+ +(1|8|16) ' "$out/bench_gemv_${v// /_}.log"
    grep -E '^  M=' "$out/bench_gemv_${v// /_}.log"
  done
fi

e2e_summary="not run"
if [[ $e2e == 1 && -x .carry/kiln ]]; then
  echo "== end to end: kiln logits on cpu / cuda f32 / cuda f32 decode / cuda bf16 vs the HF references"
  t0=$(date +%s)
  e2e_dir=/tmp/kiln_e2e && rm -rf "$e2e_dir" && mkdir -p "$e2e_dir"
  for r in .carry/refs/*/; do
    a=$(basename "$r")
    python3 -c "import json,sys; r=json.load(open('$r/reference.json')); [print(i, ','.join(map(str, c['prompt']))) for i, c in enumerate(r['cases'])]" |
    while read -r i toks; do
      .carry/kiln logits --engine ".carry/engines/$a.f32" --device cpu --tokens "$toks" --out "$e2e_dir/$a.$i.cpu.st" </dev/null >/dev/null 2>>"$e2e_dir/err.log"
      .carry/kiln logits --engine ".carry/engines/$a.f32" --device cuda --f32 --tokens "$toks" --out "$e2e_dir/$a.$i.gpu32.st" </dev/null >/dev/null 2>>"$e2e_dir/err.log"
      .carry/kiln logits --engine ".carry/engines/$a.f32" --device cuda --f32 --decode --tokens "$toks" --out "$e2e_dir/$a.$i.gpu32d.st" </dev/null >/dev/null 2>>"$e2e_dir/err.log"
      [[ -d ".carry/engines/$a.bf16" ]] && .carry/kiln logits --engine ".carry/engines/$a.bf16" --device cuda --tokens "$toks" --out "$e2e_dir/$a.$i.gpu16.st" </dev/null >/dev/null 2>>"$e2e_dir/err.log"
    done
  done
  python3 - "$e2e_dir" <<'PY' | tee "$out/e2e.txt"
import glob, json, os, sys
import numpy as np
from safetensors.numpy import load_file
d = sys.argv[1]
print(f"{'fixture':32s} {'case':>4s} {'cpu':>9s} {'cuda f32':>9s} {'f32 dec':>9s} {'cuda bf16':>9s} {'bf16 top1':>9s}")
worst = {"cpu": 0, "gpu32": 0, "gpu32d": 0, "gpu16": 0}; top1_bad = 0; top1_n = 0; missing = 0
for r in sorted(glob.glob(".carry/refs/*/")):
    a = os.path.basename(r.rstrip("/"))
    ref = json.load(open(r + "reference.json")); refs = load_file(r + "reference.safetensors")
    for i, c in enumerate(ref["cases"]):
        R = refs[c["logits_tensor"]].astype(np.float64)
        row = []
        for k in ["cpu", "gpu32", "gpu32d", "gpu16"]:
            f = f"{d}/{a}.{i}.{k}.st"
            if not os.path.exists(f):
                row.append("-")
                if k != "gpu16": missing += 1
                continue
            L = load_file(f)["logits"].astype(np.float64).reshape(R.shape)
            e = float(np.linalg.norm(L - R) / np.linalg.norm(R)) if np.isfinite(L).all() else float("inf")
            worst[k] = max(worst[k], e); row.append(e)
            if k == "gpu16":
                srt = np.sort(R, axis=1); margin = srt[:, -1] - srt[:, -2]
                sel = margin >= 0.1
                top1_n += int(sel.sum()); agree = (L.argmax(1) == R.argmax(1))[sel]
                top1_bad += int((~agree).sum()); row.append(f"{int(agree.sum())}/{int(sel.sum())}")
        print(f"{a:32s} {i:4d} " + " ".join(f"{x:9.2e}" if isinstance(x, float) else f"{x:>9s}" for x in row))
print(f"worst rel L2 vs HF: cpu {worst['cpu']:.2e}, cuda f32 {worst['gpu32']:.2e}, cuda f32 decode {worst['gpu32d']:.2e}, "
      f"cuda bf16 {worst['gpu16']:.2e}; bf16 top-1 disagreements at margin>=0.1: {top1_bad}/{top1_n}; missing {missing}")
PY
  # stories260K: greedy story on the GPU in bf16 vs the reference (first 100 tokens at least).
  want=$(python3 -c "import json; g=json.load(open('.carry/refs/stories260K-hf/reference.json'))['greedy_from_bos']; print(' '.join(map(str, g['greedy'])))")
  for dt in f32 bf16; do
    got=$(.carry/kiln run --engine ".carry/engines/stories260K-hf.$dt" --device cuda --tokens 1 --max-tokens 256 \
          --temperature 0 --ignore-eos --output-tokens 2>>"$e2e_dir/err.log")
    python3 -c "
w='$want'.split(); g='$got'.split(); n=0
while n < min(len(w), len(g)) and w[n] == g[n]: n += 1
print('stories260K greedy on cuda $dt: first %d of %d tokens match the reference' % (n, len(w)))" | tee -a "$out/e2e.txt"
  done
  # Dummy Llama-3-8B, bf16, batch 1: prompt 128 tokens, time 256 vs 1 output tokens -> TPOT.
  toks=$(python3 -c "print(','.join(str(1000 + i) for i in range(128)))")
  for n in 1 256; do
    s0=$(date +%s.%N)
    .carry/kiln run --engine .carry/engines/llama-3-8b.bf16 --device cuda --tokens "$toks" --max-tokens $n \
      --temperature 0 --ignore-eos --output-tokens >/dev/null 2>>"$e2e_dir/err.log"
    echo "$n $(python3 -c "import time; print(time.time() - $s0)")"
  done | tee "$e2e_dir/l3.txt"
  python3 -c "
l = dict(map(float, x.split()) for x in open('$e2e_dir/l3.txt'))
t = (l[256] - l[1]) / 255
print('Llama-3-8B dummy bf16 batch 1 ISL 128: kiln run wall %.2f s (1 token) / %.2f s (256 tokens) -> %.2f ms per output token, %.1f tok/s' % (l[1], l[256], 1e3 * t, 1 / t))" | tee -a "$out/e2e.txt"
  head -5 "$e2e_dir/err.log"
  e2e_summary="$(tail -4 "$out/e2e.txt" | tr '\n' ' ') ($(( $(date +%s) - t0 )) s)"
fi

if [[ $profile == 1 && -x .carry/kiln ]] && command -v ncu >/dev/null; then
  echo "== ncu: kernel times of Llama-3-8B (dummy, bf16) batch-1 decode steps"
  toks=$(python3 -c "print(','.join(str(1000 + i) for i in range(128)))")
  timeout 300 ncu --metrics gpu__time_duration.sum --csv --launch-skip 2000 --launch-count 990 \
    .carry/kiln run --engine .carry/engines/llama-3-8b.bf16 --device cuda --tokens "$toks" --max-tokens 12 \
    --temperature 0 --ignore-eos --output-tokens >"$out/ncu.csv" 2>"$out/ncu.err"
  python3 - "$out/ncu.csv" <<'PY' | tee "$out/profile.txt"
import csv, sys, collections
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"'))]
hdr = rows[0]; ki = hdr.index("Kernel Name"); vi = hdr.index("Metric Value"); ui = hdr.index("Metric Unit")
tot = collections.Counter(); cnt = collections.Counter()
for r in rows[1:]:
    v = float(r[vi].replace(",", "")) * {"nsecond": 1e-3, "ns": 1e-3, "msecond": 1e3, "ms": 1e3}.get(r[ui], 1.0)
    name = r[ki].split("(")[0].split("<")[0].replace("void ", "").replace("kiln::cuda::", "").strip()
    tot[name] += v; cnt[name] += 1
n = len(rows) - 1; s = sum(tot.values())
print(f"{n} kernels, {s:.0f} us of kernel time (~3 decode steps of ~330 launches)")
for k, v in tot.most_common(20): print(f"  {v:9.1f} us  {100 * v / s:5.1f}%  x{cnt[k]:4d}  {k[:90]}")
PY
fi

mc_summary="not run"
if [[ $memcheck == 1 ]] && command -v compute-sanitizer >/dev/null; then
  echo "== compute-sanitizer memcheck (op tests)"
  t0=$(date +%s)
  timeout "${MEMCHECK_TIMEOUT:-300}" compute-sanitizer --tool memcheck --leak-check no --error-exitcode 3 \
    .carry/kiln_cuda_ops_tests --gtest_filter="$filter" >"$out/memcheck.log" 2>&1
  mc_rc=$?
  mc_summary="rc=$mc_rc ($(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1)), $(( $(date +%s) - t0 )) s"
  grep -E 'ERROR SUMMARY|Invalid|FAILED' "$out/memcheck.log" | head -20
fi

echo
echo "================ summary ================"
grep -E '^\[  PASSED  \]|^\[  FAILED  \]|^\[  SKIPPED \]' "$out/ops_tests.log" | sort | uniq -c | head -20
echo "memcheck: $mc_summary"
echo "e2e: $e2e_summary"
if [[ $bench == 1 ]]; then
  grep -E '^copy|^  M=' "$out/bench_gemv.log"
fi
exit "$tests_rc"
