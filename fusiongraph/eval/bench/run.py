"""The bench's driver: load the table(s), embed, classify, replay per fold (or train/test), evaluate, write
results.json / info.json and the plots (see :mod:`fusiongraph.eval.bench`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
from platformdirs import user_cache_dir

from fusiongraph.eval.bench.metrics import cost_model
from fusiongraph.eval.bench.online import run_online
from fusiongraph.eval.bench.plots import plot_frontier, plot_learning, print_table
from fusiongraph.eval.bench.replay import (
    Replay,
    _build_store,
    _folds,
    _route_rows,
    cascade_name,
    evaluate,
    fold_points,
)
from fusiongraph.eval.tables import OutcomeTable, TableError, load_table
from fusiongraph.routing.router import Router, RoutingParams
from fusiongraph.routing.strategies import STRATEGIES
from fusiongraph.store.index import near_duplicates


def default_cache_path() -> Path:
    return Path(user_cache_dir("fusiongraph")) / "embeddings.sqlite"


def _embed(embedder, texts: list[str], desc: str, quiet: bool) -> np.ndarray:
    from tqdm import tqdm

    with tqdm(total=len(texts), desc=desc, unit="prompt", disable=quiet, leave=False) as bar:
        return embedder.embed(texts, progress=bar.update)


def _load(path, label: str) -> tuple[OutcomeTable, int]:
    table = load_table(path, allow_missing=True)
    keep = table.complete_rows()
    dropped = len(table) - len(keep)
    if not len(keep):
        raise TableError(f"{path}: no row has a score for every model")
    return (table.subset(keep) if dropped else table), dropped


def run_bench(
    table_path,
    out_dir,
    test_path=None,
    folds: int = 5,
    online: bool = False,
    seed: int = 0,
    cache_path=None,
    *,
    shuffle_online: bool = False,
    embedder=None,
    k: int | None = None,
    min_similarity: float | None = None,
    router_params: dict | None = None,
    quiet: bool = False,
    plot: bool = True,
    progress: Callable[[str], None] | None = None,
    class_column: bool = False,
    judge_accuracies=(0.85,),
    price_sensitivity: float | None = None,
    explore: float | None = None,
    introduce: tuple[str, int] | None = None,
) -> dict:
    """Replay the routing strategies on an outcome table; write results.json and frontier.png to out_dir.

    ``embedder`` defaults to MiniLM with an on-disk cache at ``cache_path`` (default: the user cache dir);
    ``k``/``min_similarity``/``price_sensitivity``/``explore`` default to FusionContext's; ``router_params``
    override Router's fields. Task classes come from the graph's own taxonomy classifier unless
    ``class_column`` (the table's ``category``, a gold label the live graph does not have). ``cascade@A`` is
    replayed for each A in ``judge_accuracies``. ``introduce=(MODEL, N)`` (online only) hides MODEL's
    outcomes before prompt N, and after it records MODEL's outcome only where the cascade tried it.
    Returns the results dict, also written to ``out_dir/results.json`` as exactly
    ``{"strategies": {NAME: {"quality", "cost", "curve", "aiq", "match_best_cost", "quality_at_quarter_cost",
    ["pick_share", "oracle_choice" | "tries",] [two models: "apgr", "cpt50", "cpt80", "routellm_curve" | "strong_share"]}},
    ["online": {...}]}``;
    run metadata (models by cost, cost unit, class source, knobs, timings) goes to ``out_dir/info.json``.
    """
    started = time.perf_counter()
    defaults = RoutingParams.from_context()  # the live route's knobs
    k = defaults.k if k is None else int(k)
    min_similarity = defaults.min_similarity if min_similarity is None else float(min_similarity)
    accept = defaults.accept
    # None: each training store chooses its operating point, as the live graph does with the knob left empty
    lam = defaults.price_sensitivity if price_sensitivity is None else float(price_sensitivity)
    explore = defaults.explore if explore is None else float(explore)
    router_params = dict(router_params or {})
    say = progress or ((lambda s: None) if quiet else (lambda s: print(s, flush=True)))

    train, dropped = _load(table_path, "TABLE")
    if dropped:
        say(f"{table_path}: left out {dropped} row(s) without a score for every model")
    if test_path is not None:
        test, dropped2 = _load(test_path, "TABLE2")
        if dropped2:
            say(f"{test_path}: left out {dropped2} row(s) without a score for every model")
        if set(test.models) != set(train.models):
            raise TableError(
                f"{test_path}: models {sorted(test.models)} differ from {table_path}'s {sorted(train.models)}"
            )
        test = _reorder(test, train.models)
    else:
        if folds < 2:
            raise ValueError(f"folds must be >= 2, got {folds}")
        if len({*train.prompts}) < folds:
            raise TableError(f"{table_path}: {len(train)} rows are too few for {folds} folds")
        test = train
    models = train.models
    m = len(models)

    if embedder is None:
        from fusiongraph.routing.embeddings import Embedder, MiniLMEmbeddings

        embedder = Embedder(MiniLMEmbeddings(), cache_path=Path(cache_path) if cache_path else default_cache_path())
    t0 = time.perf_counter()
    vec_train = _embed(embedder, train.prompts, "embedding", quiet)
    vec_test = vec_train if test is train else _embed(embedder, test.prompts, "embedding TABLE2", quiet)
    embed_s = time.perf_counter() - t0
    distinct = {t: i for i, t in enumerate(train.prompts)}  # the router's view: distinct prompts sharing a vector
    blind = {
        "distinct_prompts": len(distinct),
        "same_vector": near_duplicates(vec_train[list(distinct.values())]),
        "long_prompts": len(embedder.long_ones(list(distinct))[0]),  # known from embedding them
        "prompts_per_s": round(len(distinct) / embed_s, 1) if embed_s > 0 else None,
    }

    if class_column and (train.categories is None or test.categories is None):
        raise TableError(
            f"--class-column: {table_path if train.categories is None else test_path} has no 'category' column"
        )
    if class_column:
        cls_train = list(train.categories)
        cls_test = list(test.categories)
        scores_test = [{c: 1.0} if c else {} for c in cls_test]
        class_source = "category column (gold labels)"
    else:
        from fusiongraph.defaults import DEFAULT_TAXONOMY
        from fusiongraph.routing.taxonomy import Taxonomy

        taxonomy = Taxonomy.from_yaml(DEFAULT_TAXONOMY)
        c_train = [taxonomy.classify(v, embedder) for v in vec_train]
        c_test = c_train if test is train else [taxonomy.classify(v, embedder) for v in vec_test]
        cls_train = [c.task_class for c in c_train]
        cls_test = [c.task_class for c in c_test]
        scores_test = [c.scores for c in c_test]
        class_source = "taxonomy classifier"

    costs = cost_model(train, test)
    by_cost = costs.models_by_cost(models)
    n = len(test)
    modes = tuple(STRATEGIES)  # every registered routing strategy ("taxonomy", "knn", "probe", "hybrid", ...)
    replay = Replay.empty(n, m, modes)
    hint = None if costs.unit.startswith("USD") else dict(zip(models, costs.means.tolist()))
    if introduce is not None and (not online or introduce[0] not in models or m < 3):
        raise ValueError(
            f"--introduce needs --online, a table of 3 or more models and one of its models "
            f"({', '.join(models)}), got {introduce[0]!r}"
        )

    # each cascade's operating point: the hybrid's, capped so that the judged cascade is within the best single
    # model's cost (fusiongraph.routing.operating_point.cap_for_cascade)
    caps = {"cascades": {cascade_name(a): a for a in (None, *judge_accuracies)}, "accept": accept}
    t0 = time.perf_counter()
    if test is train:
        fold_of = _folds(train.prompts, folds, seed)
        for f in range(folds):
            tr, te = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
            store, known = _build_store(
                embedder,
                [train.prompts[i] for i in tr],
                vec_train[tr],
                [cls_train[i] for i in tr],
                train.scores[tr],
                train.costs[tr] if train.costs is not None else None,
                train.tokens[tr] if train.tokens is not None else None,
                models,
            )
            router = Router(store, probe_background=False, **router_params)
            _route_rows(
                router, models, vec_test, scores_test, test.prompts, te, k, min_similarity, modes, replay, known, hint
            )
            if lam is None:
                replay.points.append(fold_points(router, by_cost, modes, k, min_similarity, explore, **caps))
            store.close()
            say(f"fold {f + 1}/{folds}: trained on {len(tr)} rows, tested on {len(te)}")
    else:
        store, known = _build_store(
            embedder, train.prompts, vec_train, cls_train, train.scores, train.costs, train.tokens, models
        )
        router = Router(store, probe_background=False, **router_params)
        _route_rows(
            router,
            models,
            vec_test,
            scores_test,
            test.prompts,
            np.arange(n),
            k,
            min_similarity,
            modes,
            replay,
            known,
            hint,
        )
        if lam is None:
            replay.points.append(fold_points(router, by_cost, modes, k, min_similarity, explore, **caps))
        store.close()
    route_s = time.perf_counter() - t0

    rng = np.random.default_rng(seed)
    replay.p["random"] = rng.random((n, m))

    strategies = evaluate(
        test.scores,
        costs,
        models,
        by_cost,
        replay,
        accept,
        judge_accuracies=judge_accuracies,
        explore=explore,
        default_lambda=lam,
        seed=seed,
    )
    results = {"strategies": strategies}
    info = {
        "table": str(table_path),
        "embedding": blind,
        "test_table": str(test_path) if test_path else None,
        "folds": folds if test_path is None else None,
        "rows": n,
        "models_by_cost": by_cost,
        "cost_unit": costs.unit,
        "class_source": class_source,
        "price_sensitivity": "auto (chosen per training store)" if lam is None else lam,
        "operating_points": [{mode: pt.as_dict() for mode, pt in pts.items()} for pts in replay.points],
        "explore": explore,
        "judge_accuracies": list(judge_accuracies),
        "k": k,
        "min_similarity": min_similarity,
        "accept_threshold": accept,
        "router": {
            f: getattr(Router, f)
            for f in (
                "class_prior_strength",
                "neighbour_prior_strength",
                "similarity_power",
                "probe_c",
                "probe_min_outcomes",
            )
        }
        | router_params,
        "seed": seed,
        "router_predict_calls": replay.router_calls,
        "seconds": {"embed": round(embed_s, 2), "route": round(route_s, 2)},
    }
    if online:
        results["online"] = run_online(
            test if test_path else train,
            vec_test if test_path else vec_train,
            cls_test if test_path else cls_train,
            scores_test,
            costs,
            models,
            by_cost,
            strategies,
            k,
            min_similarity,
            router_params,
            embedder,
            order_seed=seed if shuffle_online else None,
            lam=lam,
            explore=explore,
            introduce=introduce,
        )
    info["seconds"]["total"] = round(time.perf_counter() - started, 2)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "info.json").write_text(json.dumps(info, indent=2, default=float))
    if plot:
        plot_frontier(results, out_dir / "frontier.png", info)
        if online:
            plot_learning(results["online"], out_dir / "learning.png")
    if not quiet:
        print_table(results, info)
    return results


def _reorder(table: OutcomeTable, models: list[str]) -> OutcomeTable:
    idx = [table.models.index(m) for m in models]
    return OutcomeTable(
        table.prompts,
        table.categories,
        list(models),
        table.scores[:, idx],
        table.costs[:, idx] if table.costs is not None else None,
        table.tokens[:, idx] if table.tokens is not None else None,
        table.path,
    )
