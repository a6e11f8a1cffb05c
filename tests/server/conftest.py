"""Fixtures for the server and Python-package tests: the kiln CLI (env KILN_BIN, default
build/kiln), the stories260K engine built from ../shared fixtures, and live `kiln serve`
processes on 127.0.0.1 (port 0: the server picks a free port and prints it)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("KILN_SHARED", REPO.parent / "shared"))
KILN_BIN = Path(os.environ.get("KILN_BIN", REPO / "build" / "kiln"))
CHECKPOINT = SHARED / "fixtures" / "stories260K-hf"
TOKENIZER = SHARED / "models" / "stories260K" / "tok512.model"
MODEL_NAME = "stories260K"


def kiln_cmd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(KILN_BIN), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def engine_dir(tmp_path_factory) -> Path:
    if not KILN_BIN.exists():
        pytest.skip(f"kiln CLI not found at {KILN_BIN} (set KILN_BIN)")
    if not CHECKPOINT.exists() or not TOKENIZER.exists():
        pytest.skip(f"stories260K fixtures not found under {SHARED}")
    out = tmp_path_factory.mktemp("engines") / "stories260K"
    r = kiln_cmd("build", "--checkpoint", str(CHECKPOINT), "--tokenizer", str(TOKENIZER), "--out", str(out),
                 "--dtype", "f32")
    assert r.returncode == 0, r.stderr
    return out


class Server:
    """A `kiln serve` child process."""

    def __init__(self, engine: Path, *extra: str, log_dir: Path):
        self.log_path = log_dir / f"serve-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w+")
        self.proc = subprocess.Popen(
            [str(KILN_BIN), "serve", "--engine", str(engine), "--host", "127.0.0.1", "--port", "0",
             "--served-model-name", MODEL_NAME, *extra],
            stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.time() + 60
        self.port = None
        while time.time() < deadline and self.port is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kiln serve exited with {self.proc.returncode}: {self.log()}")
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log())
            if m:
                self.port = int(m.group(1))
            else:
                time.sleep(0.05)
        if self.port is None:
            self.stop()
            raise RuntimeError("kiln serve did not start: " + self.log())
        self.url = f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def server(engine_dir, tmp_path_factory):
    s = Server(engine_dir, "--max-batch-size", "64", log_dir=tmp_path_factory.mktemp("logs"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def kiln_run(engine_dir):
    """Greedy text of `kiln run` for a prompt (the single-request reference)."""
    cache = {}

    def run(prompt: str, max_tokens: int) -> str:
        key = (prompt, max_tokens)
        if key not in cache:
            r = kiln_cmd("run", "--engine", str(engine_dir), "--temperature", "0", "--max-tokens", str(max_tokens),
                         "--prompt", prompt)
            assert r.returncode == 0, r.stderr
            assert r.stdout.endswith("\n")
            cache[key] = r.stdout[:-1]
        return cache[key]

    return run


def scrape(url: str) -> dict:
    """/metrics as {'name{labels}': value}."""
    import requests

    text = requests.get(url + "/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def metric(m: dict, name: str) -> float:
    """Sum of every series of metric `name` (any labels)."""
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))
