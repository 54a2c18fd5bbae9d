"""A burst of concurrent chat requests against one real `langgraph dev` worker (the OpenAI-compatible endpoint).

    .venv/bin/python benchmarks/bench_load.py --clients 200 --out bench-out/load.json

The roster is the 135M local tier alone (the shipped roster less the Qwen tiers), the admission knobs their
defaults (FUSIONGRAPH_MAX_RUNS 2, FUSIONGRAPH_MAX_QUEUED 8) unless set. Every client sends one question at
once (client timeout 170 s), every other one streamed (`--streamed 0.5`); meanwhile another process asks
`/v1/models` every 50 ms. Reported: answers, 429s and other
statuses, the time to each client's response (429s apart), `/v1/models` p50/p99 during the burst, and how long
after the last client the worker has no run in flight or queued (its /metrics gauges), and how many streams got
an error event after their HTTP 200 (none should: a full gate is a real 429).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fusiongraph.defaults import DEFAULT_MODELS  # noqa: E402
from tests.devserver import run_langgraph_dev  # noqa: E402


def gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def poll_models(url: str, stop, got) -> None:
    """Ask `/v1/models` every 50 ms until `stop`; put the latencies (seconds) on `got`."""
    seconds = []
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            t = time.perf_counter()
            r = c.get("/v1/models")
            seconds.append(time.perf_counter() - t)
            assert r.status_code == 200, r.status_code
            time.sleep(0.05)
    got.put(seconds)


async def burst(url: str, clients: int, streamed: float = 0.5) -> dict:
    body = {
        "model": "fusiongraph",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 16,
        "fusiongraph": {"local_only": True, "guides": 0, "cache": False},
    }
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=url, timeout=170, limits=limits) as c:
        every = round(1 / streamed) if streamed > 0 else 0

        async def one(i):
            t = time.perf_counter()
            stream = bool(every) and i % every == every - 1
            try:
                r = await c.post("/v1/chat/completions", json=body | {"stream": stream})
                if stream and r.status_code == 200 and ('"error"' in r.text or "[DONE]" not in r.text):
                    return "200+error", time.perf_counter() - t
                return r.status_code, time.perf_counter() - t
            except httpx.HTTPError as exc:
                return type(exc).__name__, time.perf_counter() - t

        stop, got = multiprocessing.Event(), multiprocessing.Queue()
        poller = multiprocessing.Process(target=poll_models, args=(url, stop, got))
        poller.start()  # its own process: the clients' own work does not delay its requests
        started = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(clients)))
        last_client = time.perf_counter()
        stop.set()
        models_s = got.get(timeout=60)
        poller.join(timeout=10)
        idle_after = None
        while time.perf_counter() - last_client < 60:
            m = (await c.get("/metrics")).text
            if gauge(m, "fusiongraph_running_runs") == 0 and gauge(m, "fusiongraph_queued_runs") == 0:
                idle_after = round(time.perf_counter() - last_client, 2)
                break
            await asyncio.sleep(0.2)
        m = (await c.get("/metrics")).text
    statuses: dict[str, int] = {}
    for status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    refused = [s for st, s in results if st == 429]
    answered = [s for st, s in results if st == 200]
    ms = np.array(models_s) * 1000
    return {
        "clients": clients,
        "streamed": sum(1 for i in range(clients) if every and i % every == every - 1),
        "stream_error_after_200": statuses.get("200+error", 0),
        "statuses": statuses,
        "answered": len(answered),
        "refused_429": len(refused),
        "server_errors_5xx": sum(n for st, n in statuses.items() if st.isdigit() and int(st) >= 500),
        "seconds_to_429_max": round(max(refused), 3) if refused else None,
        "seconds_to_answer_p50_max": [round(float(np.median(answered)), 2), round(max(answered), 2)]
        if answered
        else None,
        "burst_seconds": round(last_client - started, 2),
        "models_ms_p50_p99": [round(float(np.percentile(ms, 50)), 1), round(float(np.percentile(ms, 99)), 1)],
        "models_polls": len(ms),
        "idle_seconds_after_last_client": idle_after,
        "rejected_total": gauge(m, "fusiongraph_rejected_runs_total"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--streamed", type=float, default=0.5, help="share of clients that stream (0-1)")
    ap.add_argument("--out", type=Path, default=Path("bench-out/load.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = yaml.safe_load(DEFAULT_MODELS.read_text())
        data["models"] = [m for m in data["models"] if not str(m["id"]).startswith("qwen")]
        roster = Path(tmp) / "models.yaml"
        roster.write_text(yaml.safe_dump(data))
        with run_langgraph_dev(Path(tmp), FUSIONGRAPH_MODELS=str(roster)) as (url, _log):
            result = asyncio.run(burst(url, args.clients, args.streamed))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
