"""What any router could reach on a synthetic table: the generator's own Bayes router.

    .venv/bin/python benchmarks/synth_bound.py --seed 1 [--seed 2 ...] [--rows 3000] [--json]

`synth_tables.generate` draws each prompt's outcome from P(correct) = sigmoid(skill + topic offset +
long-prompt effect - hardness x (visible difficulty + hidden latent) + per-model noise). A router sees the
prompt's text, so at best it knows the topic, the template's and modifier's difficulty and the length (the
*visible* part), never the hidden latent difficulty (N(0, 1.2) plus the trap prompts) nor the per-model
noise. This script routes every row with the generator's exact parameters: per row and model the expected
success E[P] over the hidden part (Monte Carlo over the generator's own distributions) and the expected
cost; then for each willingness to pay lambda (USD per success point, the Lagrangian whose sweep traces the
best reachable quality-cost frontier) picks argmax E[P] - lambda x E[cost], and scores the picks with the
table's *recorded* outcomes and costs, as the replay bench scores its strategies. The frontier's metrics
come from the bench's own functions (`fusiongraph.eval.bench.metrics.many_model_metrics`).

No router that learns from the table can beat this in expectation: it is a bound on what the text can
tell, used to tell a router's shortfall from the table's. numpy only; deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import synth_tables as st  # noqa: E402

from fusiongraph.eval.bench.metrics import many_model_metrics  # noqa: E402


def expected(table: dict, draws: int = 600, seed: int = 12345) -> tuple[np.ndarray, np.ndarray]:
    """(E[P(correct)], E[cost]) per row and model, given only the visible part of each row."""
    t = table["truth"]
    rng = np.random.default_rng(seed)
    latent = st.hidden_difficulty(draws, rng)  # (D,)
    noise = rng.normal(0, 1, (draws, len(t["skill"])))  # (D, m)
    offset = t["offset"][:, t["topic"]].T  # (rows, m)
    is_long = t["is_long"][:, None]
    q = np.zeros(offset.shape)
    for k in range(draws):  # rows x models per draw: memory stays small
        d = (t["seen_d"] + latent[k])[:, None]
        q += st.success(t["skill"], offset, t["long_eff"], is_long, t["hard"], d, noise[k] * t["noise_sd"])
    q /= draws
    topic_len = np.array([st.TOPIC_LEVEL[x][1] for x in st.TOPICS])[t["topic"]][:, None]
    # E[tokens]: the median at the visible difficulty x E[exp(0.15 latent)] x the lognormal's mean / median
    tok = st.mean_tokens(t["verbosity"], topic_len, is_long, t["seen_d"][:, None])
    tok = tok * np.mean(np.exp(0.15 * latent)) * np.exp(st.TOKEN_SD**2 / 2)
    return q, st.cost_usd(t["prompt_tokens"][:, None], tok, t["price_in"], t["price_out"])


def frontier(table: dict, q: np.ndarray, c: np.ndarray, points: int = 400) -> list[tuple[float, float]]:
    """(mean recorded cost, mean recorded score) of argmax q - lambda x c over a log sweep of lambda."""
    s, cost = table["scores"], table["costs"]
    rows = np.arange(len(s))
    lams = np.concatenate([[0.0], np.geomspace(1e-2, 1e5, points)])
    out = []
    for lam in lams:
        pick = np.argmax(q - lam * c, axis=1)
        out.append((float(cost[rows, pick].mean()), float(s[rows, pick].mean())))
    return out


def bound(seed: int, rows: int = 3000, draws: int = 600) -> dict:
    table = st.generate(seed, rows)
    s, cost, models = table["scores"], table["costs"], table["models"]
    q, c = expected(table, draws)
    curve = frontier(table, q, c)
    single_q, single_c = s.mean(0), cost.mean(0)
    best = int(np.argmax(single_q))
    m = many_model_metrics(
        curve, float(single_c.min()), float(single_c.max()), float(single_q[best]), float(single_c[best])
    )
    # the best this router does at any price
    top = max(curve, key=lambda p: p[1])
    return {
        "seed": seed,
        "rows": rows,
        "best_single": {
            "model": models[best],
            "quality": round(float(single_q[best]), 4),
            "cost": float(single_c[best]),
        },
        "bayes_router": {
            "match_best_cost_pct": None
            if m["match_best_cost"] is None
            else round(100 * m["match_best_cost"] / single_c[best], 1),
            "quality_at_quarter_cost": None
            if m["quality_at_quarter_cost"] is None
            else round(m["quality_at_quarter_cost"], 4),
            "aiq": round(m["aiq"], 4),
            "top_quality": round(top[1], 4),
            "top_quality_cost_pct": round(100 * top[0] / single_c[best], 1),
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, action="append", help="table seed (repeatable; default 1 2 3)")
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--draws", type=int, default=600, help="Monte Carlo draws of the hidden part")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    results = [bound(sd, args.rows, args.draws) for sd in (args.seed or [1, 2, 3])]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        "seed | best single (quality) | Bayes router: match best (% of its cost) | quality at 1/4 cost | AIQ | top quality @ cost"
    )
    for r in results:
        b, br = r["best_single"], r["bayes_router"]
        mb = "never" if br["match_best_cost_pct"] is None else f"{br['match_best_cost_pct']}%"
        print(
            f"{r['seed']} | {b['model']} {b['quality']} | {mb} | {br['quality_at_quarter_cost']} | {br['aiq']} | "
            f"{br['top_quality']} @ {br['top_quality_cost_pct']}%"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
