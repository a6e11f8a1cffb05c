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
  # Everything the binaries load except libc/libstdc++/CUDA (the GPU machine has those).
  ldd .carry/kiln_cuda_ops_tests .carry/kiln_bench_gemv | awk '/=> \// {print $3}' | sort -u |
    grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt|libcublas|libcublasLt|libcudart)\.so' |
    xargs -r -I{} cp -L {} .carry/lib/
  du -sh .carry
  exit 0
fi

memcheck=1 bench=1 sweep=0 filter='CudaOps*'
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-memcheck) memcheck=0 ;;
    --no-bench) bench=0 ;;
    --gemv-sweep) sweep=1 ;;  # also A/B the GEMV variants (KILN_GEMV_RT=2, KILN_GEMV_M1_MMA=1)
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
  for v in "KILN_GEMV_RT=2" "KILN_GEMV_M1_MMA=1" "KILN_GEMV_RT=2 KILN_GEMV_M1_MMA=1"; do
    echo "== GEMV variant: $v"
    env $v .carry/kiln_bench_gemv >"$out/bench_gemv_${v// /_}.log" 2>&1
    grep -E '^[a-z_]+ [0-9]+->[0-9]+ +(1|8|16) ' "$out/bench_gemv_${v// /_}.log"
    grep -E '^  M=' "$out/bench_gemv_${v// /_}.log"
  done
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
if [[ $bench == 1 ]]; then
  grep -E '^copy|^  M=' "$out/bench_gemv.log"
fi
exit "$tests_rc"
