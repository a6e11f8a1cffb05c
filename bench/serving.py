#!/usr/bin/env python3
"""Serving benchmark: a concurrency sweep against a running `kiln serve` (or any OpenAI-compatible
server), reporting TTFT / TPOT / ITL / end-to-end latency percentiles and throughput, like vLLM's
benchmark_serving.py. Traffic goes only to --base-url.

    kiln serve --engine /tmp/e_st --port 8000 &
    python bench/serving.py --base-url http://127.0.0.1:8000 --concurrency 1,4,16,64 \
        --input-len 128 --output-len 128 --output bench/results/serving.json

Each level runs --num-prompts requests (default: 4 x concurrency, at least 16) with exactly
`concurrency` in flight; outputs have a fixed length (ignore_eos) unless --no-ignore-eos.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional

import requests

WORDS = ("once upon a time there was a little girl named lily she loved to play outside in the park with "
         "her dog and her friends one day they found a big red ball under the old tree and they were happy").split()


def percentiles(xs: List[float], ps=(50, 90, 95, 99)) -> Dict[str, float]:
    if not xs:
        return {"mean": 0.0, **{f"p{p}": 0.0 for p in ps}}
    s = sorted(xs)
    out = {"mean": statistics.fmean(s)}
    for p in ps:
        k = (len(s) - 1) * p / 100
        lo, hi = int(k), min(int(k) + 1, len(s) - 1)
        out[f"p{p}"] = s[lo] + (s[hi] - s[lo]) * (k - lo)
    return out


def make_prompt(rng: random.Random, n: int, vocab: int = 0):
    """n words of text, or (vocab > 0) n random token ids: exact lengths, and no tokenizer needed."""
    if vocab > 0:
        return [rng.randrange(100, vocab) for _ in range(n)]
    return " ".join(rng.choice(WORDS) for _ in range(n))


def one_request(session: requests.Session, a, prompt, model: str) -> dict:
    if a.endpoint == "chat":
        url = a.base_url + "/v1/chat/completions"
        body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    else:
        url = a.base_url + "/v1/completions"
        body = {"model": model, "prompt": prompt}
    body.update({"max_tokens": a.output_len, "temperature": a.temperature, "stream": True,
                 "stream_options": {"include_usage": True}, "ignore_eos": a.ignore_eos})
    headers = {"Authorization": f"Bearer {a.api_key}"} if a.api_key else {}
    t0 = time.perf_counter()
    ttft: Optional[float] = None
    last = t0
    itl: List[float] = []
    usage = None
    error = ""
    try:
        with session.post(url, json=body, headers=headers, stream=True, timeout=a.timeout) as r:
            if r.status_code != 200:
                return {"ok": False, "error": f"HTTP {r.status_code}: {r.text[:200]}"}
            for line in r.iter_lines():
                if not line.startswith(b"data: "):
                    continue
                data = line[6:]
                if data == b"[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    usage = chunk["usage"]
                if not chunk.get("choices"):
                    continue
                c = chunk["choices"][0]
                piece = c.get("text") if "text" in c else (c.get("delta") or {}).get("content")
                if "role" in (c.get("delta") or {}) or (c.get("finish_reason") and not piece):
                    continue  # chat's opening chunk and a bare finish chunk carry no token
                # kiln sends one chunk per generated token (its text may be empty)
                now = time.perf_counter()
                if ttft is None:
                    ttft = now - t0
                else:
                    itl.append(now - last)
                last = now
    except requests.RequestException as e:
        error = str(e)
    e2e = time.perf_counter() - t0
    if error or usage is None:
        return {"ok": False, "error": error or "no usage chunk"}
    out_tokens = usage["completion_tokens"]
    tpot = (e2e - ttft) / (out_tokens - 1) if ttft is not None and out_tokens > 1 else None
    return {"ok": True, "ttft": ttft, "tpot": tpot, "itl": itl, "e2e": e2e, "prompt_tokens": usage["prompt_tokens"],
            "output_tokens": out_tokens}


def run_level(a, model: str, concurrency: int, prompts: List[str]) -> dict:
    local = threading.local()

    def task(p):
        if not hasattr(local, "s"):
            local.s = requests.Session()
        return one_request(local.s, a, p, model)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(task, prompts))
    duration = time.perf_counter() - t0
    ok = [r for r in results if r["ok"]]
    out_tok = sum(r["output_tokens"] for r in ok)
    in_tok = sum(r["prompt_tokens"] for r in ok)
    ms = lambda xs: {k: v * 1000 for k, v in percentiles(xs).items()}  # noqa: E731
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "errors": sorted({r["error"] for r in results if not r["ok"]})[:5],
        "duration_s": duration,
        "total_input_tokens": in_tok,
        "total_output_tokens": out_tok,
        "request_throughput_per_s": len(ok) / duration,
        "output_throughput_tok_per_s": out_tok / duration,
        "total_throughput_tok_per_s": (in_tok + out_tok) / duration,
        "ttft_ms": ms([r["ttft"] for r in ok if r["ttft"] is not None]),
        "tpot_ms": ms([r["tpot"] for r in ok if r["tpot"] is not None]),
        "itl_ms": ms([x for r in ok for x in r["itl"]]),
        "e2e_ms": ms([r["e2e"] for r in ok]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("--endpoint", choices=["completions", "chat"], default="completions")
    ap.add_argument("--model", help="default: the server's first model")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--concurrency", default="1,2,4,8,16,32,64", help="comma-separated levels")
    ap.add_argument("--num-prompts", type=int, help="requests per level (default 4 x concurrency, >= 16)")
    ap.add_argument("--input-len", type=int, default=128, help="prompt length in words (about tokens)")
    ap.add_argument("--token-ids", type=int, default=0, metavar="VOCAB",
                    help="send prompts as random token ids below VOCAB (engines without a tokenizer)")
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--no-ignore-eos", dest="ignore_eos", action="store_false")
    ap.add_argument("--warmup", type=int, default=2, help="requests before the sweep")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--output", help="write the JSON report here")
    a = ap.parse_args()
    a.base_url = a.base_url.rstrip("/")

    headers = {"Authorization": f"Bearer {a.api_key}"} if a.api_key else {}
    models = requests.get(a.base_url + "/v1/models", headers=headers, timeout=30).json()["data"]
    model = a.model or models[0]["id"]
    rng = random.Random(a.seed)
    levels = [int(x) for x in a.concurrency.split(",") if x.strip()]
    s = requests.Session()
    for _ in range(a.warmup):
        one_request(s, a, make_prompt(rng, a.input_len, a.token_ids), model)

    report = {"base_url": a.base_url, "model": model, "endpoint": a.endpoint, "input_len": a.input_len,
              "output_len": a.output_len, "ignore_eos": a.ignore_eos, "temperature": a.temperature,
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "levels": []}
    print(f"{'conc':>5} {'reqs':>5} {'fail':>4} {'req/s':>7} {'out tok/s':>10} {'TTFT p50':>9} {'TTFT p99':>9} "
          f"{'TPOT p50':>9} {'TPOT p99':>9} {'E2E p50':>9}   (ms)")
    for c in levels:
        n = a.num_prompts or max(16, 4 * c)
        prompts = [make_prompt(rng, a.input_len, a.token_ids) for _ in range(n)]
        r = run_level(a, model, c, prompts)
        report["levels"].append(r)
        print(f"{c:>5} {r['requests']:>5} {r['failed']:>4} {r['request_throughput_per_s']:>7.2f} "
              f"{r['output_throughput_tok_per_s']:>10.1f} {r['ttft_ms']['p50']:>9.1f} {r['ttft_ms']['p99']:>9.1f} "
              f"{r['tpot_ms']['p50']:>9.2f} {r['tpot_ms']['p99']:>9.2f} {r['e2e_ms']['p50']:>9.1f}", flush=True)
    text = json.dumps(report, indent=2)
    if a.output:
        with open(a.output, "w") as f:
            f.write(text + "\n")
        print(f"wrote {a.output}")
    else:
        print(text)
    return 0 if all(l["failed"] == 0 for l in report["levels"]) else 1


if __name__ == "__main__":
    sys.exit(main())
