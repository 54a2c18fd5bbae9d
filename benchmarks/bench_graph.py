"""Speed of the graph itself: overhead, fan-out, local tokens/s, and load through `langgraph dev`.

    .venv/bin/python benchmarks/bench_graph.py overhead   # graph vs a plain loop, instant fake models
    .venv/bin/python benchmarks/bench_graph.py fanout     # 8 subtasks vs 1 against a 200 ms HTTP tier
    .venv/bin/python benchmarks/bench_graph.py tokens     # local model tokens/s: graph vs raw llama-cpp-python
    .venv/bin/python benchmarks/bench_graph.py load       # 50 concurrent runs through langgraph dev

Each prints its figures and writes bench-out/graph-<name>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fake_openai_server import FakeOpenAIServer  # noqa: E402

from fusiongraph.defaults import DEFAULT_TAXONOMY  # noqa: E402
from fusiongraph.routing.router import RoutingParams  # noqa: E402

OUT = ROOT / "bench-out"


def _write(name: str, data: dict) -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / f"graph-{name}.json").write_text(json.dumps(data, indent=2))
    print(json.dumps(data, indent=2))


def _config(tmp: Path, url: str) -> tuple[Path, Path]:
    """A roster with one OpenAI-compatible tier at `url`, and the shipped taxonomy pointing at it."""
    models = tmp / "models.yaml"
    models.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "id": "fast",
                        "kind": "openai_compatible",
                        "base_url": url,
                        "model": "fake",
                        "context": 8192,
                        "price_in": 0.1,
                        "price_out": 0.4,
                    }
                ]
            }
        )
    )
    taxonomy = yaml.safe_load(DEFAULT_TAXONOMY.read_text())
    for body in taxonomy["classes"].values():
        body["candidates"] = ["fast"]
    tax = tmp / "taxonomy.yaml"
    tax.write_text(yaml.safe_dump(taxonomy))
    return models, tax


def overhead(runs: int) -> None:
    """Graph run vs a plain Python loop making the same model, embedding, routing and store calls."""
    from langchain_core.messages import HumanMessage

    from fusiongraph.context import FusionContext
    from fusiongraph.graphs.fusion import graph
    from fusiongraph.models.roster import ModelSpec, Roster
    from fusiongraph.resources import Resources, use_resources
    from fusiongraph.routing.embeddings import Embedder
    from fusiongraph.store import Outcome, OutcomeStore
    from tests.conftest import judge_script, make_taxonomy, planner_script
    from tests.fakes import BagOfWordsEmbeddings, ScriptedChat

    specs = [
        ModelSpec(id=i, kind="openai_compatible", base_url="http://127.0.0.1:9/v1", answers=i == "m")
        for i in ("m", "planner", "judge")
    ]
    chats = {
        "m": ScriptedChat(script=lambda p: "GOOD"),
        "planner": ScriptedChat(script=planner_script),
        "judge": ScriptedChat(script=judge_script),
    }
    embedder = Embedder(BagOfWordsEmbeddings())
    query = "What is 2 plus 2 AND write a haiku about rain"
    with tempfile.TemporaryDirectory() as tmp:
        store = OutcomeStore(Path(tmp), embedder.dim, embedder.name)
        res = Resources(Roster(specs, chats), make_taxonomy(["m"]), embedder, store)
        ctx = FusionContext(planner_model="planner", judge_model="judge", guides=0)
        graph_s, loop_s = [], []
        with use_resources(res):
            for _ in range(runs):
                t = time.perf_counter()
                graph.invoke({"query": query}, context=ctx)
                graph_s.append(time.perf_counter() - t)
        for _ in range(runs):
            t = time.perf_counter()
            subtasks = json.loads(chats["planner"].invoke([HumanMessage(query)]).text)["subtasks"]
            answers = []
            for s in subtasks:
                vec = embedder.embed_one(s)
                cls = res.taxonomy.classify(vec, embedder)
                res.router.route(
                    vec,
                    cls.scores,
                    cls.confidence,
                    ["m"],
                    ["m"],
                    RoutingParams.from_context(
                        k=16, min_similarity=0.5, min_neighbours=4, taxonomy_confidence=0.5, price_sensitivity=0.02
                    ),
                )
                answer = chats["m"].invoke([HumanMessage(s)]).text
                chats["judge"].invoke([HumanMessage(f"Candidate answer:\n{answer}")])
                store.record(s, vec, cls.task_class, [Outcome("m", 1.0, True)])
                answers.append(answer)
            chats["planner"].invoke([HumanMessage("Request: " + "\n".join(f"Answer: {a}" for a in answers))])
            loop_s.append(time.perf_counter() - t)
    g, p = statistics.median(graph_s), statistics.median(loop_s)
    _write(
        "overhead",
        {
            "runs": runs,
            "subtasks": 2,
            "graph_median_ms": round(g * 1000, 2),
            "loop_median_ms": round(p * 1000, 2),
            "overhead_ms": round((g - p) * 1000, 2),
        },
    )


def fanout(repeats: int, latency_ms: float) -> None:
    """8 subtasks against a tier with a fixed latency, against 1 subtask."""
    from fusiongraph.context import FusionContext
    from fusiongraph.graphs.fusion import graph

    server = FakeOpenAIServer(latency_s=latency_ms / 1000).start()
    with tempfile.TemporaryDirectory() as tmp:
        models, tax = _config(Path(tmp), server.url)
        ctx = FusionContext(
            models_path=str(models), taxonomy_path=str(tax), store_dir=str(Path(tmp) / "store"), guides=0
        )
        graph.invoke({"query": "warm up"}, context=ctx)
        times = {}
        for n in (1, 8):
            query = " AND ".join(f"What is {i} plus {i + 1}?" for i in range(n))
            runs = []
            for _ in range(repeats):
                t = time.perf_counter()
                out = graph.invoke({"query": query}, context=ctx)
                runs.append(time.perf_counter() - t)
                assert len(out["results"]) == n
            times[n] = statistics.median(runs)
    server.close()
    _write(
        "fanout",
        {
            "tier_latency_ms": latency_ms,
            "one_subtask_s": round(times[1], 3),
            "eight_subtasks_s": round(times[8], 3),
            "ratio": round(times[8] / times[1], 2),
            "calls": "1 subtask: decompose, answer, judge; 8: decompose, 8 x (answer, judge), synthesize",
        },
    )


def tokens(repeats: int, max_tokens: int) -> None:
    """Local model tokens/s through the graph (the answer call) against raw llama-cpp-python."""
    from fusiongraph.context import FusionContext
    from fusiongraph.graphs.fusion import graph
    from fusiongraph.models.local_llm import load_llama
    from fusiongraph.prompts import load_prompt
    from fusiongraph.resources import get_resources

    prompt = "Write a short story about a lighthouse keeper."
    with tempfile.TemporaryDirectory() as tmp:
        ctx = FusionContext(local_only=True, llm_judge=False, max_tokens=max_tokens, store_dir=tmp, guides=0)
        graph.invoke({"query": prompt}, context=ctx)  # load everything once
        through = []
        for _ in range(repeats):
            a = graph.invoke({"query": prompt}, context=ctx)["results"][0]["attempts"][0]
            through.append(a["tokens_out"] / a["latency_s"])
        spec = get_resources(ctx).roster["smollm2-135m"]
        model = get_resources(ctx).roster.chat_model("smollm2-135m", max_tokens, 60)
        llama = load_llama(model.model_path, spec.context, None).llama
        raw = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = llama.create_chat_completion(
                [{"role": "system", "content": load_prompt("answer")}, {"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                temperature=0.0,
            )
            raw.append(out["usage"]["completion_tokens"] / (time.perf_counter() - t))
    g, r = statistics.median(through), statistics.median(raw)
    _write(
        "tokens",
        {
            "max_tokens": max_tokens,
            "graph_tokens_per_s": round(g, 1),
            "raw_tokens_per_s": round(r, 1),
            "ratio": round(g / r, 3),
        },
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(runs: int) -> None:
    """`runs` concurrent graph runs through a real `langgraph dev` with a fast fake tier."""
    from langgraph_sdk import get_client

    from fusiongraph.store import OutcomeStore

    server = FakeOpenAIServer(latency_s=0.01).start()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models, tax = _config(tmp, server.url)
        port = _free_port()
        env = {
            **os.environ,
            "LANGGRAPH_CLI_NO_ANALYTICS": "1",
            "LANGSMITH_TRACING": "false",
            "LANGGRAPH_NO_VERSION_CHECK": "true",
            "HF_HUB_OFFLINE": "1",
            "FUSIONGRAPH_MODELS": str(models),
            "FUSIONGRAPH_TAXONOMY": str(tax),
            "FUSIONGRAPH_STORE_DIR": str(tmp / "store"),
        }
        log = open(tmp / "server.log", "w")
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "langgraph"),
                "dev",
                "--no-browser",
                "--no-reload",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            import httpx

            for _ in range(240):
                try:
                    if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)

            async def go():
                client = get_client(url=url)

                async def one(i):
                    return await client.runs.wait(
                        None, "fusion", input={"query": f"What is {i} plus {i}?"}, context={"guides": 0}
                    )

                t = time.perf_counter()
                outs = await asyncio.gather(*(one(i) for i in range(runs)), return_exceptions=True)
                return outs, time.perf_counter() - t

            outs, wall = asyncio.run(go())
            ok = [o for o in outs if isinstance(o, dict) and o.get("answer")]
            store = OutcomeStore(tmp / "store", 384, "all-MiniLM-L6-v2")
            counts = store.counts()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            server.close()
    _write(
        "load",
        {
            "concurrent_runs": runs,
            "completed": len(ok),
            "wall_s": round(wall, 2),
            "errors": [repr(o)[:200] for o in outs if not (isinstance(o, dict) and o.get("answer"))][:5],
            "store": counts,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("overhead").add_argument("--runs", type=int, default=50)
    f = sub.add_parser("fanout")
    f.add_argument("--repeats", type=int, default=5)
    f.add_argument("--latency-ms", type=float, default=200.0)
    t = sub.add_parser("tokens")
    t.add_argument("--repeats", type=int, default=5)
    t.add_argument("--max-tokens", type=int, default=128)
    sub.add_parser("load").add_argument("--runs", type=int, default=50)
    a = parser.parse_args()
    if a.what == "overhead":
        overhead(a.runs)
    elif a.what == "fanout":
        fanout(a.repeats, a.latency_ms)
    elif a.what == "tokens":
        tokens(a.repeats, a.max_tokens)
    else:
        load(a.runs)


if __name__ == "__main__":
    main()
