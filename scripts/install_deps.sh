#!/usr/bin/env bash
# Installs what kiln needs to build and test on a fresh Debian machine (idempotent).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
PKGS=(cmake ninja-build g++ pkg-config libomp-dev nlohmann-json3-dev libcli11-dev libfmt-dev libgtest-dev
      libsentencepiece-dev libpcre2-dev libutf8proc-dev libcpp-httplib-dev clang libclang-rt-14-dev python3-pip)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "kiln: installing Debian packages: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check numpy safetensors pytest openai requests scikit-build-core nanobind 2>&1 | grep -v "WARNING: Running pip as" || true
