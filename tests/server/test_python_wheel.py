"""Acceptance 4: the Python API on an installed wheel (fresh venv, `pip install` of the wheel).

The wheel is built with `pip wheel . --no-build-isolation` (scikit-build-core + nanobind must be
installed; the build folder build-py/ keeps rebuilds incremental), or taken from env KILN_WHEEL.
Skipped, with the reason, where the build tools are missing or KILN_SKIP_WHEEL=1."""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import venv

import pytest

from conftest import CHECKPOINT, REPO, TOKENIZER

HERE = os.path.dirname(os.path.abspath(__file__))


def _wheel(tmp_path) -> str:
    given = os.environ.get("KILN_WHEEL")
    if given:
        return given
    if os.environ.get("KILN_SKIP_WHEEL") == "1":
        pytest.skip("KILN_SKIP_WHEEL=1")
    missing = [m for m in ("scikit_build_core", "nanobind") if importlib.util.find_spec(m) is None]
    missing += [t for t in ("cmake", "ninja") if shutil.which(t) is None]
    if missing:
        pytest.skip("wheel build tools unavailable: " + ", ".join(missing) + " (pip install scikit-build-core nanobind)")
    out = tmp_path / "wheels"
    env = dict(os.environ, CMAKE_BUILD_PARALLEL_LEVEL=os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                        "-w", str(out)], capture_output=True, text=True, env=env, timeout=3600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    [whl] = glob.glob(str(out / "kiln-*.whl"))
    return whl


@pytest.mark.wheel
def test_python_api_on_installed_wheel(tmp_path, kiln_run):
    if not CHECKPOINT.exists():
        pytest.skip("stories260K fixtures missing")
    whl = _wheel(tmp_path)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = str(env_dir / "bin" / "python")
    r = subprocess.run([py, "-m", "pip", "install", "--no-index", "--no-deps", "-q", whl], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    expected = tmp_path / "expected.txt"
    expected.write_text(kiln_run("Once upon a time", 48), encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PATH"] = str(env_dir / "bin") + os.pathsep + env.get("PATH", "")
    r = subprocess.run([py, os.path.join(HERE, "python_api_check.py"), str(CHECKPOINT), str(TOKENIZER), str(work),
                        str(expected)], capture_output=True, text=True, timeout=600, cwd=str(tmp_path), env=env)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "python API checks passed" in r.stdout
