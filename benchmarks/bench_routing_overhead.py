"""Routing overhead per subtask (taxonomy + neighbours) against the outcome store size.

Fills stores of 1k..1M subtasks (random unit vectors, 4 models' outcomes each) through the store's own
`record_many`, fits the success probe (its newest 20k subtasks; timed apart: the graph fits it in a
background thread), then times the graph's routing code (`Taxonomy.classify` + `Router.route`), with and
without embedding the subtask (MiniLM, uncached). Prints p50/p99 in ms and writes a JSON file.

    .venv/bin/python benchmarks/bench_routing_overhead.py --sizes 1000 10000 100000 1000000 --out bench-out/routing.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from fusiongraph.context import FusionContext
from fusiongraph.defaults import DEFAULT_MODELS, DEFAULT_TAXONOMY
from fusiongraph.models.roster import Roster
from fusiongraph.resources import default_embedder
from fusiongraph.routing.router import Router, RoutingParams
from fusiongraph.routing.taxonomy import Taxonomy
from fusiongraph.store import Outcome, OutcomeStore

MODELS = ["smollm2-135m", "openai-compatible", "gpt-4o-mini", "gpt-4o"]


def fill(store: OutcomeStore, n: int, dim: int, rng: np.random.Generator) -> float:
    started = time.perf_counter()
    with tqdm(total=n, desc=f"filling {n:,}", unit="subtask") as bar:
        for start in range(0, n, 20_000):
            m = min(20_000, n - start)
            vecs = rng.normal(size=(m, dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            ok = rng.random((m, len(MODELS))) < np.array([0.4, 0.6, 0.75, 0.9])
            store.record_many(
                (
                    f"synthetic subtask {start + i}",
                    vecs[i],
                    "factual_qa",
                    [Outcome(model, float(ok[i, j]), bool(ok[i, j]), source="bench") for j, model in enumerate(MODELS)],
                )
                for i in range(m)
            )
            bar.update(m)
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> dict:
    ms = np.asarray(samples) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=FusionContext().k)
    parser.add_argument("--out", type=Path, default=Path("bench-out/routing.json"))
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep the filled stores in this directory and reuse them on the next run",
    )
    args = parser.parse_args()

    embedder = default_embedder()
    ctx = FusionContext()
    roster = Roster.from_yaml(DEFAULT_MODELS)
    prices = {m: (roster[m].price_in, roster[m].price_out) for m in MODELS}
    taxonomy = Taxonomy.from_yaml(DEFAULT_TAXONOMY)
    rng = np.random.default_rng(0)
    queries = [f"What is the capital of country number {i}, and why is it famous?" for i in range(args.queries)]
    report = {}
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            where = args.keep / str(size) if args.keep else Path(tmp)
            store = OutcomeStore(where, embedder.dim, embedder.name)
            have = store.counts()["subtasks"]
            if have not in (0, size):
                raise SystemExit(f"{where} holds {have} subtasks, not {size}: remove it")
            fill_s = fill(store, size, embedder.dim, rng) if have == 0 else 0.0
            router = Router(store)
            t0 = time.perf_counter()  # the success probe's fit (a background thread in the graph), timed apart
            router.probe.fit()
            probe_fit_s = time.perf_counter() - t0
            # the operating point (price_sensitivity left empty: chosen on the store, a background thread in the
            # graph), chosen in line here and timed apart, so that the timed routes read the cached choice
            t0 = time.perf_counter()
            point = router.operating_points.get(
                MODELS,
                mode=ctx.router,
                k=args.k,
                min_similarity=0.0,
                explore=ctx.explore,
                wait=True,
                judge_accuracy=ctx.judge_accuracy,
                accept=ctx.quality_threshold,
            )
            point_s = time.perf_counter() - t0
            taxonomy.classify(embedder.embed_one("warm up"), embedder)

            def route(vec):
                cls = taxonomy.classify(vec, embedder)
                return router.route(
                    vec,
                    cls.scores,
                    cls.confidence,
                    MODELS,
                    MODELS,
                    RoutingParams.from_context(
                        ctx, k=args.k, min_similarity=0.0, min_neighbours=4, taxonomy_confidence=0.5
                    ),
                    budget_usd=ctx.budget_usd,
                    prompt_tokens=20,
                    prices=prices,
                    default_tokens=ctx.max_tokens,
                )

            vecs = [embedder.embed_one(f"warm {i}") for i in range(10)]
            [route(v) for v in vecs]
            without, with_embedding = [], []
            for vec in embedder.embed(queries):  # routing alone, back to back (embeddings made beforehand)
                t0 = time.perf_counter()
                route(vec)
                without.append(time.perf_counter() - t0)
            for q in queries:  # what a new subtask costs: embed it (uncached), then route it
                t0 = time.perf_counter()
                route(np.asarray(embedder.embeddings.embed_query(q), dtype=np.float32))
                with_embedding.append(time.perf_counter() - t0)
            index = type(faiss.downcast_index(store._index.index)).__name__
            report[size] = {
                "index": index,
                "fill_s": round(fill_s, 1),
                "probe_fit_s": round(probe_fit_s, 2),
                "operating_point_s": round(point_s, 2),
                "price_sensitivity": point.price_sensitivity,
                "without_embedding": percentiles(without),
                "with_embedding": percentiles(with_embedding),
            }
            print(size, json.dumps(report[size]), flush=True)
            store.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu_count": os.cpu_count(), "k": args.k, "results": report}, indent=2))
    print("\n| subtasks (x 4 outcomes each) | index | routing p50 / p99 (ms) | with embedding p50 / p99 (ms) |")
    print("|---|---|---|---|")
    for size, r in report.items():
        print(
            f"| {size:,} | {r['index']} | {r['without_embedding']['p50_ms']} / {r['without_embedding']['p99_ms']} | "
            f"{r['with_embedding']['p50_ms']} / {r['with_embedding']['p99_ms']} |"
        )


if __name__ == "__main__":
    main()
