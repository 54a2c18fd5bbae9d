"""The Postgres outcome store: routing overhead, freshness lag between replicas, write throughput.

Three parts, each on its own scratch database (``fg_bench_*``, created on the server given by ``--url``
and dropped afterwards unless ``--keep``):

1. **routing** (``--sizes``): fills a Postgres store with N subtasks (random unit vectors, 4 models'
   outcomes each) through the store's own ``record_many`` in batches of 20k (``fill`` of
   ``bench_routing_overhead.py``), or, with ``--copy-from DIR``, by a COPY import of the SQLite store kept
   by ``bench_routing_overhead.py --keep`` (same rows as the SQLite figures; what ``migrate_store`` does,
   without its verifying re-open). Then fits the probe and times the graph's routing code exactly as
   ``bench_routing_overhead.py`` does (``Taxonomy.classify`` + ``Router.route``, k=64, 4 priced models,
   embeddings made beforehand), and how long a new worker takes to open the store (load + index build).
2. **lag** (``--lag-samples``): two store instances (two "replicas") on one database; A records a new
   subtask, and we poll B's ``neighbours()`` until it returns it (B learns of it by LISTEN/NOTIFY).
   Lag is measured from A's commit (``record`` returned) and from the start of A's ``record`` call.
3. **writers** (``--writers``): 1, 4, 16 processes, each with its own store instance, each calling
   ``record()`` (one subtask, 4 outcomes, one transaction) in a loop for ``--duration`` seconds, all
   starting together once every process has started and connected.

    .venv/bin/python benchmarks/bench_store_postgres.py --sizes 100000 --out bench-out/postgres.json
    .venv/bin/python benchmarks/bench_store_postgres.py --sizes 1000000 --copy-from /tmp/rstores/1000000 \\
        --parts routing --out bench-out/postgres-1m.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_routing_overhead import MODELS, fill, percentiles  # noqa: E402

from fusiongraph.store import Outcome, open_store  # noqa: E402

DIM = 384  # MiniLM's, as the routing benchmark's stores


def db_url(base: str, name: str) -> str:
    """`base` (a server URL) with its database replaced by `name`."""
    head, _, tail = base.rpartition("/")
    query = ""
    if "?" in tail:
        tail, query = tail.split("?", 1)
        query = "?" + query
    return f"{head}/{name}{query}"


def recreate(base: str, name: str) -> str:
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return db_url(base, name)


def drop(base: str, name: str) -> None:
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def exists(base: str, name: str) -> bool:
    with psycopg.connect(base, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def random_unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def outcomes_for(rng: np.random.Generator) -> list[Outcome]:
    ok = rng.random(len(MODELS)) < np.array([0.4, 0.6, 0.75, 0.9])
    return [Outcome(m, float(ok[j]), bool(ok[j]), source="bench") for j, m in enumerate(MODELS)]


# ---------------------------------------------------------------------------------------------- routing
def copy_from_sqlite(source: Path, url: str) -> float:
    """COPY the SQLite store at `source` into the (empty) Postgres store at `url`; seconds taken."""
    from fusiongraph.store.backend import make_backend

    started = time.perf_counter()
    src, dst = make_backend(source), make_backend(url)
    try:
        meta = src.read_meta()
        dst.open(int(meta["dim"]), meta.get("embedder", "unknown"))
        upto_s, upto_o = src.max_ids()
        want = src.count_rows((upto_s, upto_o))
        dst.import_rows(src.export_subtasks(upto_s, 20_000), src.export_outcomes(upto_o, 20_000), False, expected=want)
    finally:
        src.close()
        dst.stop()
        dst.close()
    return time.perf_counter() - started


def bench_routing(args, size: int) -> dict:
    from fusiongraph.context import FusionContext
    from fusiongraph.defaults import DEFAULT_MODELS, DEFAULT_TAXONOMY
    from fusiongraph.models.roster import Roster
    from fusiongraph.resources import default_embedder
    from fusiongraph.routing.router import Router, RoutingParams
    from fusiongraph.routing.taxonomy import Taxonomy

    embedder = default_embedder()
    assert embedder.dim == DIM, embedder.dim
    ctx = FusionContext()
    roster = Roster.from_yaml(DEFAULT_MODELS)
    prices = {m: (roster[m].price_in, roster[m].price_out) for m in MODELS}
    taxonomy = Taxonomy.from_yaml(DEFAULT_TAXONOMY)
    rng = np.random.default_rng(0)
    queries = [f"What is the capital of country number {i}, and why is it famous?" for i in range(args.queries)]

    name = f"fg_bench_{size}"
    fill_how = "kept"
    fill_s = 0.0
    if args.keep and exists(args.url, name):
        url = db_url(args.url, name)
    else:
        url = recreate(args.url, name)
        if args.copy_from:
            fill_how = f"COPY import of {args.copy_from}"
            fill_s = copy_from_sqlite(args.copy_from, url)
            print(f"copied {size:,} subtasks in {fill_s:.0f} s", flush=True)
    t0 = time.perf_counter()
    cache = args.cache_dir / str(size) if args.cache_dir else None  # FUSIONGRAPH_STORE_CACHE_DIR's role
    store = open_store(url, embedder.dim, embedder.name, cache_dir=cache)  # a worker starting on a filled database
    open_s = time.perf_counter() - t0
    have = store.counts()["subtasks"]
    if have == 0:
        fill_how = "record_many, batches of 20k"
        open_s = None
        fill_s = fill(store, size, embedder.dim, rng)
    elif have != size:
        raise SystemExit(f"{name} holds {have} subtasks, not {size}: drop it or run without --keep")
    lite = None
    try:
        router = Router(store)
        t0 = time.perf_counter()
        router.probe.fit()
        probe_fit_s = time.perf_counter() - t0
        # the operating point (a background thread in the graph) chosen before the timed routes, as the probe
        router.operating_points.get(
            MODELS, mode=ctx.router, k=args.k, min_similarity=0.0, explore=ctx.explore, wait=True
        )
        routers = {"postgres": (store, router)}
        if args.compare_sqlite:  # the same rows in SQLite, timed query by query next to Postgres
            from fusiongraph.store import OutcomeStore

            lite = OutcomeStore(args.compare_sqlite, embedder.dim, embedder.name)
            if lite.counts()["subtasks"] != size:
                raise SystemExit(f"{args.compare_sqlite} holds {lite.counts()['subtasks']} subtasks, not {size}")
            lite_router = Router(lite)
            lite_router.probe.fit()
            lite_router.operating_points.get(
                MODELS, mode=ctx.router, k=args.k, min_similarity=0.0, explore=ctx.explore, wait=True
            )
            routers["sqlite"] = (lite, lite_router)
        taxonomy.classify(embedder.embed_one("warm up"), embedder)

        def route(router, vec):  # exactly bench_routing_overhead.py's
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
        for _, r in routers.values():
            [route(r, v) for v in vecs]
        # back to back, and with several stores interleaved query by query (the order alternating), so a
        # shared machine's load falls on every store alike
        without = {n: [] for n in routers}
        nb = {n: [] for n in routers}  # where the time goes: neighbours() alone (FAISS + the hits' text)
        for i, vec in enumerate(embedder.embed(queries)):
            for n in sorted(routers, reverse=bool(i % 2)):
                t0 = time.perf_counter()
                route(routers[n][1], vec)
                without[n].append(time.perf_counter() - t0)
        cold = {n: [] for n in routers}  # every hit's text read from the database (the hit cache emptied first)
        for i, vec in enumerate(embedder.embed(queries)):
            for n in sorted(routers, reverse=bool(i % 2)):
                t0 = time.perf_counter()
                routers[n][0].neighbours(vec, args.k)
                nb[n].append(time.perf_counter() - t0)
                routers[n][0]._hit_cache.clear()
                t0 = time.perf_counter()
                routers[n][0].neighbours(vec, args.k)
                cold[n].append(time.perf_counter() - t0)
        import faiss

        index = type(faiss.downcast_index(store._index.index)).__name__
        result = {
            "index": index,
            "fill": fill_how,
            "fill_s": round(fill_s, 1),
            "fill_subtasks_per_s": round(size / fill_s) if fill_s else None,
            "worker_open_s": round(open_s, 1) if open_s is not None else None,
            "probe_fit_s": round(probe_fit_s, 2),
            "queries": len(queries),
            "without_embedding": percentiles(without["postgres"]),
            "neighbours_only": percentiles(nb["postgres"]),
            "neighbours_cold": percentiles(cold["postgres"]),
        }
        if lite is not None:
            diff = np.asarray(without["postgres"]) - np.asarray(without["sqlite"])
            result["sqlite_interleaved"] = {
                "index": type(faiss.downcast_index(lite._index.index)).__name__,
                "without_embedding": percentiles(without["sqlite"]),
                "neighbours_only": percentiles(nb["sqlite"]),
                "neighbours_cold": percentiles(cold["sqlite"]),
                "postgres_minus_sqlite_per_query_ms": {
                    "p50": round(float(np.percentile(diff, 50)) * 1000, 3),
                    "mean": round(float(diff.mean()) * 1000, 3),
                },
            }
    finally:
        store.close()
        if lite is not None:
            lite.close()
    if not args.keep:
        drop(args.url, name)
    return result


# ---------------------------------------------------------------------------------------------- lag
def bench_lag(args) -> dict:
    name = "fg_bench_lag"
    url = recreate(args.url, name)
    rng = np.random.default_rng(1)
    a = open_store(url, DIM, "bench")
    b = open_store(url, DIM, "bench")
    try:
        a.record_many((f"seed {i}", v, "factual_qa", outcomes_for(rng)) for i, v in enumerate(random_unit(rng, 1000)))
        deadline = time.monotonic() + 10
        while len(b) < 1000 and time.monotonic() < deadline:
            time.sleep(0.01)
        if not b.backend.listening:
            raise SystemExit("replica B is not LISTENing")
        from fusiongraph.store.types import text_hash

        def wait_seen(vec, sid, since):
            n = 0
            while True:
                n += 1
                hits = b.neighbours(vec, 1)
                if hits and hits[0].subtask_id == sid:
                    return time.perf_counter(), n
                if time.perf_counter() - since > 5:
                    raise SystemExit(f"B did not see subtask {sid} within 5 s")
                time.sleep(0.0001)

        # (a) from A's commit: A's raw insert transaction (what record() does before A folds it in itself)
        from_commit, polls = [], []
        for i, vec in enumerate(random_unit(rng, args.lag_samples)):
            time.sleep(0.02)
            text = f"lag sample {i}"
            row = (text_hash(text), text, "factual_qa", vec.tobytes(), outcomes_for(rng))
            with a._lock:
                sid = a.backend.insert([row], time.time())[0]
            t_commit = time.perf_counter()
            t_seen, n = wait_seen(vec, sid, t_commit)
            from_commit.append(t_seen - t_commit)
            polls.append(n)
        # (b) from the start of A's record() call (insert + commit + A's own refresh)
        from_call = []
        for i, vec in enumerate(random_unit(rng, args.lag_samples)):
            time.sleep(0.02)
            t_call = time.perf_counter()
            sid = a.record(f"lag record {i}", vec, "factual_qa", outcomes_for(rng))
            t_seen, _ = wait_seen(vec, sid, t_call)
            from_call.append(t_seen - t_call)
        return {
            "samples": args.lag_samples,
            "store_subtasks": 1000,
            "from_commit": percentiles(from_commit),
            "from_commit_max_ms": round(max(from_commit) * 1000, 3),
            "from_record_call": percentiles(from_call),
            "polls_p50": float(np.median(polls)),
        }
    finally:
        a.close()
        b.close()
        drop(args.url, name)


# ---------------------------------------------------------------------------------------------- writers
def _writer(url: str, seed: int, ready, go, duration: float, queue) -> None:
    rng = np.random.default_rng(seed)
    store = open_store(url, DIM, "bench")
    vecs = random_unit(rng, 4096)
    n = 0
    try:
        ready.put(seed)  # started, imported and connected: then all writers start together
        go.wait()
        end = time.monotonic() + duration
        while time.monotonic() < end:
            store.record(f"writer {seed} subtask {n}", vecs[n % len(vecs)], "factual_qa", outcomes_for(rng))
            n += 1
    finally:
        store.close()
        queue.put(n)


def bench_writers(args) -> dict:
    results = {}
    ctx = mp.get_context("spawn")
    for w in args.writers:
        name = f"fg_bench_writers_{w}"
        url = recreate(args.url, name)
        open_store(url, DIM, "bench").close()  # schema first, so the writers do not race to migrate
        queue, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        procs = [ctx.Process(target=_writer, args=(url, 1000 + i, ready, go, args.duration, queue)) for i in range(w)]
        for p in procs:
            p.start()
        for _ in procs:  # a busy machine takes a while to start 16 Python processes: wait for every one
            ready.get(timeout=600)
        go.set()
        counts = [queue.get(timeout=args.duration + 120) for _ in procs]
        for p in procs:
            p.join()
        with psycopg.connect(url) as conn:
            s, o = conn.execute("SELECT (SELECT count(*) FROM subtasks), (SELECT count(*) FROM outcomes)").fetchone()
        if s != sum(counts) or o != 4 * sum(counts):
            raise SystemExit(f"{w} writers: recorded {sum(counts)} subtasks, the database holds {s} / {o} outcomes")
        results[w] = {
            "subtasks": s,
            "outcomes": o,
            "subtasks_per_s": round(s / args.duration, 1),
            "outcomes_per_s": round(o / args.duration, 1),
        }
        print(f"{w} writers: {json.dumps(results[w])}", flush=True)
        drop(args.url, name)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("FG_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000])
    parser.add_argument(
        "--parts", nargs="+", default=["routing", "lag", "writers"], choices=["routing", "lag", "writers"]
    )
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--copy-from", type=Path, default=None, help="fill by COPY from this SQLite store directory")
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the filled fg_bench_<size> databases")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="keep each worker's FAISS index here between runs (as FUSIONGRAPH_STORE_CACHE_DIR); else built at open",
    )
    parser.add_argument(
        "--compare-sqlite",
        type=Path,
        default=None,
        help="a SQLite store directory with the same rows (e.g. the --copy-from one): timed interleaved with Postgres",
    )
    parser.add_argument("--lag-samples", type=int, default=200)
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("bench-out/postgres.json"))
    args = parser.parse_args()

    report: dict = {"cpu_count": os.cpu_count(), "k": args.k, "timings_s": {}}
    if "routing" in args.parts:
        report["routing"] = {}
        for size in args.sizes:
            t0 = time.perf_counter()
            report["routing"][size] = bench_routing(args, size)
            report["timings_s"][f"routing_{size}"] = round(time.perf_counter() - t0, 1)
            print(size, json.dumps(report["routing"][size]), flush=True)
    if "lag" in args.parts:
        t0 = time.perf_counter()
        report["lag"] = bench_lag(args)
        report["timings_s"]["lag"] = round(time.perf_counter() - t0, 1)
        print("lag", json.dumps(report["lag"]), flush=True)
    if "writers" in args.parts:
        t0 = time.perf_counter()
        report["writers"] = bench_writers(args)
        report["timings_s"]["writers"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    if "routing" in report:
        print(
            "\n| subtasks (x 4 outcomes each) | index | routing p50 / p99 (ms) | neighbours() p50 / p99 (ms) | fill |"
        )
        print("|---|---|---|---|---|")
        for size, r in report["routing"].items():
            print(
                f"| {size:,} | {r['index']} | {r['without_embedding']['p50_ms']} / {r['without_embedding']['p99_ms']} | "
                f"{r['neighbours_only']['p50_ms']} / {r['neighbours_only']['p99_ms']} | {r['fill_s']} s ({r['fill']}) |"
            )
            if "sqlite_interleaved" in r:
                lite = r["sqlite_interleaved"]
                print(
                    f"|   SQLite, same rows, interleaved | {lite['index']} | {lite['without_embedding']['p50_ms']} / "
                    f"{lite['without_embedding']['p99_ms']} | {lite['neighbours_only']['p50_ms']} / "
                    f"{lite['neighbours_only']['p99_ms']} | Postgres - SQLite per query: "
                    f"p50 {lite['postgres_minus_sqlite_per_query_ms']['p50']} ms |"
                )
    if "lag" in report:
        lag = report["lag"]
        print(
            f"\nfreshness lag ({lag['samples']} samples): from commit p50 {lag['from_commit']['p50_ms']} ms, "
            f"p99 {lag['from_commit']['p99_ms']} ms; from the record() call p50 {lag['from_record_call']['p50_ms']} ms, "
            f"p99 {lag['from_record_call']['p99_ms']} ms"
        )
    if "writers" in report:
        print("\n| writers | subtasks/s | outcomes/s |\n|---|---|---|")
        for w, r in report["writers"].items():
            print(f"| {w} | {r['subtasks_per_s']} | {r['outcomes_per_s']} |")


if __name__ == "__main__":
    main()
