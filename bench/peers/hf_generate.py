#!/usr/bin/env python3
"""Hugging Face transformers generate() on a real model shape with random weights: the peer
baseline for `kiln bench` (same config, batch, ISL and OSL; greedy, EOS ignored).

    python3 bench/peers/hf_generate.py --config ../shared/configs/llama-3-8b.json --batch 1 --isl 128 --osl 256

Prints one JSON object: ttft_ms, decode_tokens_per_s (batch * (osl - 1) / decode time), and the GPU.
"""
import argparse
import json
import statistics
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM


def timed_generate(model, ids, new_tokens):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                   pad_token_id=0, eos_token_id=None)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--isl", type=int, default=128)
    p.add_argument("--osl", type=int, default=256)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--dtype", default="bfloat16")
    a = p.parse_args()
    dtype = getattr(torch, a.dtype)
    cfg = AutoConfig.from_pretrained(a.config)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, torch_dtype=dtype)
    model.eval()
    ids = torch.randint(10, cfg.vocab_size, (a.batch, a.isl), device="cuda")
    with torch.inference_mode():
        timed_generate(model, ids, 4)  # warm-up
        ttft = [timed_generate(model, ids, 1) for _ in range(a.iterations)]
        full = [timed_generate(model, ids, a.osl) for _ in range(a.iterations)]
    t1, tn = statistics.median(ttft), statistics.median(full)
    out = {
        "peer": "hf-transformers generate()",
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "config": a.config,
        "batch": a.batch, "isl": a.isl, "osl": a.osl, "dtype": a.dtype,
        "ttft_ms": t1 * 1e3,
        "decode_tokens_per_s": a.batch * (a.osl - 1) / max(tn - t1, 1e-9),
        "tpot_ms": (tn - t1) / (a.osl - 1) * 1e3,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
