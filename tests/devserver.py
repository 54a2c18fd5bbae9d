"""A real `langgraph dev` for integration tests: started offline on a free port, stopped after."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def langgraph_exe() -> str:
    """The `langgraph` CLI of this environment; a dev dependency, so a missing one fails the test."""
    exe = Path(sys.executable).parent / "langgraph"
    found = str(exe) if exe.exists() else shutil.which("langgraph")
    if not found:
        pytest.fail("langgraph-cli is not installed: it is a dev dependency (pip install -e '.[dev]')")
    return found


def wait_ok(proc: subprocess.Popen, url: str, log_path: Path, timeout: float = 120) -> None:
    """Until the server answers /ok (a failure with its log when it exits or times out)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"langgraph dev exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"langgraph dev did not answer /ok in {timeout} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.contextmanager
def serve_gguf(gguf: Path, log_dir: Path, alias: str, *extra: str, port: int | None = None):
    """A real llama.cpp server (`fusiongraph.models.llama_server`: no AMX crash) serving `gguf` under `alias`;
    yields its OpenAI base URL (``.../v1``) and stops it after."""
    port = port or _free_port()
    log_path = log_dir / f"llama-server-{port}.log"
    with open(log_path, "w+") as log:  # a file: a pipe would fill and block the server
        proc = subprocess.Popen(
            [sys.executable, "-m", "fusiongraph.models.llama_server", "--model", str(gguf), "--host", "127.0.0.1"]
            + ["--port", str(port), "--n_ctx", "2048", "--model_alias", alias, *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 120
        try:
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the llama.cpp server did not start: {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            yield base
        finally:
            stop(proc)


STORE_ENV = (
    "FUSIONGRAPH_STORE_URL",
    "FUSIONGRAPH_STORE_DIR",
    "FUSIONGRAPH_STORE_CACHE_DIR",
    "FUSIONGRAPH_REQUIRE_API_KEY",
)


def dev_env(**extra: str) -> dict:
    """The environment of an offline `langgraph dev` (no analytics, tracing or version check), with only the
    given store settings (none of the caller's own)."""
    return {k: v for k, v in os.environ.items() if k not in STORE_ENV} | {
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGSMITH_TRACING": "false",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


@contextlib.contextmanager
def run_langgraph_dev(tmp_path: Path, **extra_env: str):
    """Yields (url, log path) of a `langgraph dev` serving this repo, its outcome store in `tmp_path`."""
    exe = langgraph_exe()
    port = _free_port()
    env = dev_env(FUSIONGRAPH_STORE_DIR=str(tmp_path / "store"), **extra_env)
    log_path = tmp_path / "langgraph-dev.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [exe, "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ok(proc, url, log_path)
        yield url, log_path
    finally:
        stop(proc)
