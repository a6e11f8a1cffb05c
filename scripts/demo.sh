#!/usr/bin/env bash
# kiln's main job on the default model: build an engine from ../shared/models/stories260K and
# generate a story.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh --target kiln
M=../shared/models/stories260K
./build/kiln build --checkpoint $M/stories260K.bin --tokenizer $M/tok512.bin --out engines/stories260K
./build/kiln run --engine engines/stories260K --prompt "Once upon a time" --echo --max-tokens 200 --temperature 0.8 --top-p 0.9 --stream
