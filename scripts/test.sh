#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds, runs the C++ tests (unit, golden,
# ops — GPU tests skip with the reason where no GPU exists), the server/Python tests and the
# bounded fuzzers, then prints one "N passed, N failed, N skipped" line.
set -uo pipefail
cd "$(dirname "$0")/.."
# Test processes run side by side on few cores: OpenMP threads must not spin while waiting.
export OMP_WAIT_POLICY=passive
bash scripts/install_deps.sh || exit 1
bash scripts/build.sh || { echo "kiln: build failed"; echo "0 passed, 1 failed"; exit 1; }
mkdir -p build/results
rm -f build/results/*

echo "== C++ tests (gtest)"
# Keeps failures, skips with their reason (the line after gtest's "Skipped") and the summary.
./build/tests/kiln_tests --gtest_output=json:build/results/gtest.json ${GTEST_ARGS:-} 2>&1 | \
  awk '/: Skipped$/ { reason = 1; next } reason { print "  skipped: " $0; reason = 0; next }
       /^\[  (FAILED|SKIPPED) \]|^\[==========\]|Failure|error/' | tail -200

if ls tests/server/test_*.py >/dev/null 2>&1; then
  echo "== server and Python tests (pytest)"
  KILN_BIN="$PWD/build/kiln" python3 -m pytest -q tests/server --junitxml=build/results/pytest.xml -p no:cacheprovider 2>&1 | tail -30
fi

if [ -x scripts/run_fuzzers.sh ] && [ "${KILN_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzzers (${FUZZ_SECONDS:-60} s each)"
  FUZZ_SECONDS=${FUZZ_SECONDS:-60} bash scripts/run_fuzzers.sh > build/results/fuzz.log 2>&1
  echo $? > build/results/fuzz.rc
  tail -5 build/results/fuzz.log
fi

python3 - <<'PY'
import json, os, sys, xml.etree.ElementTree as ET
p = f = s = 0
failed = []
path = "build/results/gtest.json"
if os.path.exists(path):
    for suite in json.load(open(path)).get("testsuites", []):
        for t in suite.get("testsuite", []):
            name = f"{suite['name']}.{t['name']}"
            if t.get("result") == "SKIPPED" or t.get("status") == "NOTRUN":
                s += 1
            elif t.get("failures"):
                f += 1; failed.append(name)
            else:
                p += 1
else:
    f += 1; failed.append("kiln_tests (crashed or did not run)")
if os.path.exists("build/results/pytest.xml"):
    root = ET.parse("build/results/pytest.xml").getroot()
    for tc in root.iter("testcase"):
        kinds = {c.tag for c in tc}
        if "failure" in kinds or "error" in kinds:
            f += 1; failed.append(tc.get("classname", "") + "." + tc.get("name", ""))
        elif "skipped" in kinds:
            s += 1
        else:
            p += 1
if os.path.exists("build/results/fuzz.rc"):
    if open("build/results/fuzz.rc").read().strip() == "0":
        p += 1
    else:
        f += 1; failed.append("fuzzers (see build/results/fuzz.log)")
for n in failed:
    print("FAILED:", n)
print(f"{p} passed, {f} failed, {s} skipped")
sys.exit(1 if f else 0)
PY
