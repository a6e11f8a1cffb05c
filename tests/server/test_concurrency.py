"""Acceptance 2: 64 concurrent streaming clients; each stream complete and equal to the same
request run alone; none lost; /metrics agrees with what the clients saw."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import MODEL_NAME, metric, scrape

CLIENTS = 64
PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went", "One day, a big bird", "The sun was",
           "Sam had a red ball", "In the park", "Mom said"]


def stream_one(url: str, i: int) -> dict:
    body = {"model": MODEL_NAME, "prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": 24 + (i % 5) * 4,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    if i % 2:  # half of them go through chat-less completions with a seeded sampler
        body.update({"temperature": 0.9, "seed": 1000 + i})
    text, finish, usage, done = "", None, None, False
    with requests.post(url + "/v1/completions", json=body, stream=True, timeout=300) as r:
        assert r.status_code == 200, r.text
        for line in r.iter_lines():
            if not line or line.startswith(b":"):
                continue
            assert line.startswith(b"data: ")
            data = line[6:]
            if data == b"[DONE]":
                done = True
                continue
            chunk = json.loads(data)
            if chunk["choices"]:
                text += chunk["choices"][0]["text"]
                finish = chunk["choices"][0]["finish_reason"] or finish
            if chunk.get("usage"):
                usage = chunk["usage"]
    return {"body": body, "text": text, "finish": finish, "usage": usage, "done": done}


def test_64_concurrent_streams(server):
    before = scrape(server.url)
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda i: stream_one(server.url, i), range(CLIENTS)))
    after = scrape(server.url)

    assert len(results) == CLIENTS
    for r in results:
        assert r["done"], r
        assert r["finish"] in ("stop", "length")
        assert r["usage"] is not None

    # each equals its single-request output (run alone, one at a time)
    singles = {}
    for r in results:
        body = dict(r["body"], stream=False)
        body.pop("stream_options")
        key = json.dumps(body, sort_keys=True)
        if key not in singles:
            resp = requests.post(server.url + "/v1/completions", json=body, timeout=120)
            assert resp.status_code == 200
            singles[key] = resp.json()
        single = singles[key]
        assert r["text"] == single["choices"][0]["text"], body
        assert r["finish"] == single["choices"][0]["finish_reason"]
        assert r["usage"] == single["usage"]

    key = 'kiln_http_requests_total{endpoint="/v1/completions",status="200"}'
    assert after[key] - before.get(key, 0) == CLIENTS
    gen = f'kiln_generation_tokens_total{{model_name="{MODEL_NAME}"}}'
    assert after[gen] - before[gen] == sum(r["usage"]["completion_tokens"] for r in results)
    prompt = f'kiln_prompt_tokens_total{{model_name="{MODEL_NAME}"}}'
    assert after[prompt] - before[prompt] == sum(r["usage"]["prompt_tokens"] for r in results)
    count = "kiln_e2e_request_latency_seconds_count"
    assert after[count] - before[count] == CLIENTS
    # The executor's own counter may leave out the EOS token of a request that stopped on it.
    ex_gen = "kiln_executor_generation_tokens_total"
    stopped = sum(1 for r in results if r["finish"] == "stop")
    assert 0 <= (after[gen] - before[gen]) - (metric(after, ex_gen) - metric(before, ex_gen)) <= stopped
    assert metric(after, "kiln_num_requests_running") == 0 and metric(after, "kiln_num_requests_waiting") == 0
