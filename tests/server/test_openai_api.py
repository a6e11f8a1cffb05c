"""Acceptance 1: the official openai client against a live `kiln serve` (stories260K)."""

from __future__ import annotations

import json
import math
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import MODEL_NAME, Server, metric, scrape

openai = pytest.importorskip("openai")

PROMPT = "Once upon a time"


def test_models_and_health(client, server):
    ids = [m.id for m in client.models.list().data]
    assert ids == [MODEL_NAME]
    assert requests.get(server.url + "/health", timeout=5).json() == {"status": "ok"}


def test_completion_greedy_equals_kiln_run(client, kiln_run):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=48, temperature=0)
    assert r.object == "text_completion"
    assert r.choices[0].text == kiln_run(PROMPT, 48)
    assert r.choices[0].finish_reason in ("length", "stop")
    assert r.usage.prompt_tokens > 1
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    if r.choices[0].finish_reason == "length":
        assert r.usage.completion_tokens == 48


def test_completion_stream_equals_nonstream(client):
    full = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=40, temperature=0)
    chunks = list(client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=40, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == full.choices[0].text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_and_not(client):
    msgs = [{"role": "system", "content": "Tell a story."}, {"role": "user", "content": "Once upon a time"}]
    full = client.chat.completions.create(model=MODEL_NAME, messages=msgs, max_tokens=32, temperature=0)
    assert full.object == "chat.completion"
    assert full.choices[0].message.role == "assistant"
    assert len(full.choices[0].message.content) > 0
    stream = list(client.chat.completions.create(model=MODEL_NAME, messages=msgs, max_tokens=32, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert stream[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == full.choices[0].message.content
    assert stream[-1].usage.completion_tokens == full.usage.completion_tokens
    # content parts are accepted too
    parts = client.chat.completions.create(
        model=MODEL_NAME, max_tokens=32, temperature=0,
        messages=[msgs[0], {"role": "user", "content": [{"type": "text", "text": "Once upon a time"}]}])
    assert parts.choices[0].message.content == full.choices[0].message.content


def test_stop_string(client):
    base = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=48, temperature=0).choices[0].text
    words = [w for w in base.split() if len(w) > 3]
    assert words, base
    stop = words[len(words) // 2]
    cut = base[: base.index(stop)]
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=48, temperature=0, stop=[stop])
    assert r.choices[0].text == cut
    assert r.choices[0].finish_reason == "stop"
    s = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=48, temperature=0, stop=stop,
                                  stream=True)
    assert "".join(c.choices[0].text for c in s) == cut


def test_seed_reproducible(client):
    kw = dict(model=MODEL_NAME, prompt=PROMPT, max_tokens=32, temperature=1.0, top_p=0.95)
    a = client.completions.create(seed=1234, **kw).choices[0].text
    b = client.completions.create(seed=1234, **kw).choices[0].text
    assert a == b
    others = {client.completions.create(seed=s, **kw).choices[0].text for s in (1, 2, 3)}
    assert len(others | {a}) > 1


def test_n2(client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=24, temperature=1.0, n=2, seed=7)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].text != r.choices[1].text
    c = client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=16, temperature=1.0, n=2, seed=7)
    assert len(c.choices) == 2
    # a batch of prompts x n
    b = client.completions.create(model=MODEL_NAME, prompt=[PROMPT, "The cat"], max_tokens=8, temperature=0, n=2)
    assert len(b.choices) == 4 and b.choices[0].text == b.choices[1].text


def test_completion_logprobs(client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=12, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == r.usage.completion_tokens
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert chosen <= 0 and math.isfinite(chosen)
        assert 1 <= len(top) <= 3
        assert max(top.values()) == pytest.approx(chosen, abs=1e-4)  # greedy takes the top token
    assert lp.text_offset == sorted(lp.text_offset)


def test_chat_logprobs(client):
    r = client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "Hello"}],
                                       max_tokens=8, temperature=0, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 2
        assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob


def test_sampling_knobs_accepted(client):
    r = client.completions.create(
        model=MODEL_NAME, prompt=PROMPT, max_tokens=16, temperature=0.8, top_p=0.9, presence_penalty=0.5,
        frequency_penalty=0.5, seed=3,
        extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.2, "ignore_eos": True})
    assert r.usage.completion_tokens == 16
    ids = client.completions.create(model=MODEL_NAME, prompt=[1, 403, 407], max_tokens=4, temperature=0)
    assert ids.usage.prompt_tokens == 3


def test_errors(client, server):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=0)
    assert e.value.status_code == 400 and e.value.body["param"] == "max_tokens"
    # 0 is a non-negative JSON integer below n's minimum: an error naming n, not a request of no choices
    # (found by tests/fuzz/fuzz_openai_request.cpp)
    with pytest.raises(openai.APIStatusError) as e:
        client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=4, n=0)
    assert 400 <= e.value.status_code < 500 and e.value.body["param"] == "n"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt=PROMPT, max_tokens=4)
    with pytest.raises(openai.APIStatusError) as e:
        client.completions.create(model=MODEL_NAME, prompt=[5] * 600, max_tokens=4)
    assert e.value.status_code == 413
    with pytest.raises(openai.UnprocessableEntityError):
        client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=4, extra_body={"temperature": "hot"})
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=4000)
    r = requests.post(server.url + "/v1/completions", data="{not json", timeout=5)
    assert r.status_code == 400 and "error" in r.json()
    r = requests.post(server.url + "/v1/completions", data="x" * (5 << 20), timeout=30)
    assert r.status_code == 413 and "error" in r.json()
    assert requests.get(server.url + "/nope", timeout=5).json()["error"]["code"] == "not_found"
    # and it keeps serving
    assert client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=2).usage.completion_tokens == 2


def test_api_key(engine_dir, tmp_path):
    s = Server(engine_dir, "--api-key", "sekret", log_dir=tmp_path)
    try:
        bad = openai.OpenAI(base_url=s.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=2)
        r = requests.post(s.url + "/v1/completions", json={"prompt": PROMPT}, timeout=5)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        good = openai.OpenAI(base_url=s.url + "/v1", api_key="sekret", max_retries=0)
        assert good.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=2).choices[0].text
        assert requests.get(s.url + "/health", timeout=5).status_code == 200  # probes need no key
        bad.close()
        good.close()  # idle keep-alive connections would hold the shutdown
    finally:
        s.stop()


def test_metrics_format(server, client):
    client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=4)
    m = scrape(server.url)
    for key in ("kiln_num_requests_running", "kiln_num_requests_waiting", "kiln_kv_blocks_used",
                "kiln_kv_blocks_free", "kiln_prefix_cache_hits_total", "kiln_generation_tokens_total",
                "kiln_prompt_tokens_total", "kiln_time_to_first_token_seconds_count",
                "kiln_time_per_output_token_seconds_count", "kiln_e2e_request_latency_seconds_count"):
        assert any(k.startswith(key) for k in m), key
    assert m['kiln_http_requests_total{endpoint="/v1/completions",status="200"}'] >= 1


def test_access_log(server, client):
    r = client.completions.with_raw_response.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=3)
    rid = r.parse().id
    time.sleep(0.2)
    lines = [json.loads(l) for l in server.log().splitlines() if l.startswith("{")]
    mine = [l for l in lines if l.get("request_id") == rid]
    assert len(mine) == 1
    assert mine[0]["event"] == "access" and mine[0]["status"] == 200 and mine[0]["completion_tokens"] == 3


def test_disconnect_cancels(server):
    before = scrape(server.url)
    body = json.dumps({"model": MODEL_NAME, "prompt": PROMPT, "max_tokens": 500, "ignore_eos": True,
                       "stream": True}).encode()
    # Send the request and hang up at once: the server notices on its next writes and cancels.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    key = 'kiln_request_success_total{model_name="%s",finished_reason="cancelled"}' % MODEL_NAME
    deadline = time.time() + 30
    while time.time() < deadline:
        m = scrape(server.url)
        if m.get(key, 0) > before.get(key, 0):
            break
        time.sleep(0.1)
    assert m.get(key, 0) == before.get(key, 0) + 1
    assert metric(m, "kiln_executor_requests_cancelled_total") >= metric(before, "kiln_executor_requests_cancelled_total") + 1
    assert metric(m, "kiln_num_requests_running") == 0
    gen = metric(m, "kiln_generation_tokens_total") - metric(before, "kiln_generation_tokens_total")
    assert gen < 500
    assert requests.get(server.url + "/health", timeout=5).status_code == 200


def test_sigterm_drains(engine_dir, tmp_path):
    s = Server(engine_dir, log_dir=tmp_path)
    body = {"model": MODEL_NAME, "prompt": PROMPT, "max_tokens": 200, "ignore_eos": True, "stream": True}
    got = {}

    def stream():
        with requests.post(s.url + "/v1/completions", json=body, stream=True, timeout=60) as r:
            got["lines"] = [l for l in r.iter_lines() if l]

    t = threading.Thread(target=stream)
    t.start()
    time.sleep(0.3)
    s.proc.send_signal(signal.SIGTERM)
    t.join(60)
    assert s.proc.wait(60) == 0
    assert got["lines"][-1] == b"data: [DONE]"
    finals = [json.loads(l[6:])["choices"][0]["finish_reason"] for l in got["lines"][:-1]]
    assert finals[-1] == "length"
    assert "draining" in s.log()
    s.stop()


def test_queue_full_429(engine_dir, tmp_path):
    s = Server(engine_dir, "--max-batch-size", "1", "--max-queue-size", "1", log_dir=tmp_path)
    body = {"model": MODEL_NAME, "prompt": PROMPT, "max_tokens": 200, "ignore_eos": True}
    try:
        with ThreadPoolExecutor(12) as pool:
            rs = list(pool.map(lambda _: requests.post(s.url + "/v1/completions", json=body, timeout=120), range(12)))
        codes = sorted(r.status_code for r in rs)
        assert set(codes) <= {200, 429}, codes
        assert 200 in codes and 429 in codes, codes
        busy = next(r for r in rs if r.status_code == 429)
        assert busy.headers.get("Retry-After") == "1"
        assert busy.json()["error"]["code"] == "queue_full"
        assert requests.post(s.url + "/v1/completions", json=dict(body, max_tokens=2), timeout=60).status_code == 200
    finally:
        s.stop()
