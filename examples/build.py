#!/usr/bin/env python3
"""Build an engine directory from a checkpoint with the kiln Python package.

    python examples/build.py --checkpoint ../shared/fixtures/stories260K-hf \
        --tokenizer ../shared/models/stories260K/tok512.model --out /tmp/engines/stories260K --dtype f32
"""

import argparse
import time

import kiln


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="HF folder, llama2.c .bin or GGUF file")
    ap.add_argument("--out", required=True, help="engine directory to create")
    ap.add_argument("--dtype", default="auto", choices=["auto", "f32", "f16", "bf16"])
    ap.add_argument("--tokenizer", help="tokenizer file or folder (default: beside the checkpoint)")
    ap.add_argument("--hf-config", help="with --dummy-weights: an HF config.json giving the shape")
    ap.add_argument("--dummy-weights", action="store_true", help="seeded random weights (benchmarks)")
    ap.add_argument("--lora", action="append", default=[], help="PEFT adapter folder to merge (repeatable)")
    a = ap.parse_args()
    if not a.checkpoint and not a.dummy_weights:
        ap.error("give --checkpoint (or --dummy-weights with --hf-config)")
    t0 = time.time()
    out = kiln.build(a.checkpoint, a.out, dtype=a.dtype, tokenizer=a.tokenizer, hf_config=a.hf_config,
                     dummy_weights=a.dummy_weights, lora=a.lora)
    print(f"built {out} in {time.time() - t0:.1f} s; run it with: python examples/run.py --engine {out}")


if __name__ == "__main__":
    main()
