"""Acceptance 3: 1,000 randomly malformed requests each get a 4xx JSON error object; the server
stays up and its resident memory afterwards is within 10% of before."""

from __future__ import annotations

import http.client
import json
import random

import requests

from conftest import MODEL_NAME

GOOD = {"model": MODEL_NAME, "prompt": "Once upon a time", "max_tokens": 4}
GOOD_CHAT = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

WRONG_TYPES = [None, True, "x", -1, 1.5, [], {}, [1, "a"], {"a": 1}]
BAD_FIELDS = {
    "max_tokens": [0, -5, "10", 1.5, [], {}, True, 10 ** 30, 100000],
    "temperature": [-0.1, "hot", [], {}, True, 1e9],
    "top_p": [0, -1, 1.5, "0.9", []],
    "top_k": [-2, "5", 0.5, []],
    "min_p": [-0.1, 1.5, "x"],
    "n": [0, -1, 100, "2", 1.5],
    "presence_penalty": [-3, 3, "x"],
    "frequency_penalty": [-3, 3, []],
    "repetition_penalty": [0, -1, "x"],
    "seed": ["x", 1.5, [], {}],
    "stop": [5, [1, 2], {}, ["a"] * 40],
    "stream": ["yes", 1, []],
    "logprobs": [-1, 100, "x", 1.5],
    "model": ["nope", 5, [], {}],
    "echo": ["x", 5],
    "stop_token_ids": [5, ["a"], [-1], [10 ** 9]],
    "stream_options": ["x", 5, [], {"include_usage": "x"}],
    "best_of": [0, 3, "x"],
}
BAD_PROMPTS = [None, 5, True, {}, [], [[]], [1, -1], [99999], [1.5], [[1, 2], 3], [{}], [5] * 700, ["a", 5],
               [None]]
BAD_CHAT = {
    "messages": [None, "hi", 5, [], [5], [{"content": "hi"}], [{"role": "wizard", "content": "hi"}],
                 [{"role": 5, "content": "hi"}], [{"role": "user", "content": 5}],
                 [{"role": "user", "content": [{"type": "image_url"}]}],
                 [{"role": "user", "content": [{"type": "text", "text": 5}]}], [{"role": "user", "content": {}}]],
    "top_logprobs": [-1, 100, "x", 3],  # 3 without logprobs=true is an error too
    "max_completion_tokens": [0, "x"],
}
GARBAGE = [b"", b"{", b"}", b"null", b"[]", b"42", b'"str"', b"{'single': 1}", b'{"a":}', b"\xff\xfe\xfd",
           b'{"prompt": "\xff\xfe"}', b"[" * 5000, b'{"prompt": "x",}', b"nan", b'{"max_tokens": NaN}',
           b'{"prompt": "a", "prompt": 5}']


def malformed(rng: random.Random):
    """(method, path, body bytes, headers) of one request that must be rejected with a 4xx."""
    kind = rng.randrange(9)
    headers = {"Content-Type": "application/json"}
    if kind == 0:
        return "POST", rng.choice(["/v1/completions", "/v1/chat/completions"]), rng.choice(GARBAGE), headers
    if kind == 1:
        body = dict(GOOD)
        field = rng.choice(sorted(BAD_FIELDS))
        body[field] = rng.choice(BAD_FIELDS[field])
        if field == "stream_options":
            body["stream"] = rng.random() < 0.5 and body[field] == {"include_usage": "x"}
        return "POST", "/v1/completions", json.dumps(body).encode(), headers
    if kind == 2:
        body = dict(GOOD)
        body["prompt"] = rng.choice(BAD_PROMPTS)
        if body["prompt"] is None:
            del body["prompt"]
        return "POST", "/v1/completions", json.dumps(body).encode(), headers
    if kind == 3:
        body = dict(GOOD_CHAT)
        field = rng.choice(sorted(BAD_CHAT))
        body[field] = rng.choice(BAD_CHAT[field])
        if field == "max_completion_tokens":
            del body["max_tokens"]  # max_tokens would win
        return "POST", "/v1/chat/completions", json.dumps(body).encode(), headers
    if kind == 4:  # a valid body cut short
        text = json.dumps(rng.choice([GOOD, GOOD_CHAT])).encode()
        return "POST", rng.choice(["/v1/completions", "/v1/chat/completions"]), text[: rng.randrange(1, len(text) - 1)], headers
    if kind == 5:  # random bytes
        return "POST", "/v1/completions", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))), headers
    if kind == 6:  # unknown route or method
        return rng.choice([("GET", "/v1/completions"), ("POST", "/v1/nothing"), ("GET", "/v2/models"),
                           ("DELETE", "/v1/models"), ("POST", "/v1/models/other")]) + (b"{}", headers)
    if kind == 7:  # wrong top-level types
        return "POST", "/v1/completions", json.dumps(rng.choice(WRONG_TYPES)).encode(), headers
    body = dict(GOOD)  # unknown model / echo with stream / max_tokens beyond the context
    body.update(rng.choice([{"model": "gpt-4o"}, {"echo": True, "stream": True}, {"max_tokens": 600},
                            {"suffix": "abc"}, {"prompt": "x", "n": 2, "best_of": 3}]))
    return "POST", "/v1/completions", json.dumps(body).encode(), headers


class Conn:
    """One keep-alive connection (http.client: requests adds ~40 ms stalls here), reopened when
    the server closes it."""

    def __init__(self, port: int):
        self.port = port
        self.c = None

    def request(self, method: str, path: str, body: bytes, headers: dict):
        for attempt in range(2):
            if self.c is None:
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.c.request(method, path, body=body, headers=headers)
                r = self.c.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.c.close()
                    self.c = None
                return r.status, data
            except (http.client.HTTPException, ConnectionError):
                self.c.close()
                self.c = None
                if attempt:
                    raise


def test_1000_malformed_requests(server):
    conn = Conn(server.port)
    rng = random.Random(20261125)
    # warm up (allocations that stay: thread stacks, caches) before measuring
    for _ in range(50):
        conn.request(*malformed(rng))
    assert requests.post(server.url + "/v1/completions", json=GOOD, timeout=60).status_code == 200
    rss_before = server.rss_kib()
    statuses = {}
    for i in range(1000):
        method, path, body, headers = malformed(rng)
        status, data = conn.request(method, path, body, headers)
        assert 400 <= status < 500, (i, method, path, body[:200], status, data[:300])
        err = json.loads(data)["error"]
        assert isinstance(err["message"], str) and err["message"], body[:200]
        assert "type" in err
        statuses[status] = statuses.get(status, 0) + 1
    # oversized bodies too (a few: they are big)
    for _ in range(3):
        r = requests.post(server.url + "/v1/completions", data=b"x" * (5 << 20),
                          headers={"Content-Type": "application/json"}, timeout=60)
        assert r.status_code == 413 and "error" in r.json()
    rss_after = server.rss_kib()
    assert set(statuses) <= {400, 401, 404, 405, 413, 422}
    assert statuses.get(400, 0) > 100 and statuses.get(422, 0) > 50 and statuses.get(404, 0) > 10
    assert requests.get(server.url + "/health", timeout=5).status_code == 200
    ok = requests.post(server.url + "/v1/completions", json=GOOD, timeout=60)
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 4
    assert abs(rss_after - rss_before) <= 0.10 * rss_before, (rss_before, rss_after)
