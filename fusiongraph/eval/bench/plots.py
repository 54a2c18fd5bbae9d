"""The bench's output: the routing frontier (frontier.png), the online learning curve (learning.png) and the
console table (see :mod:`fusiongraph.eval.bench`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


# ------------------------------------------------------------------------------------------ output
def plot_frontier(results: dict, path: Path, info: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info = info or {}
    unit = info.get("cost_unit", "")
    strategies = results["strategies"]
    fig, ax = plt.subplots(figsize=(9, 6))
    singles = {k: v for k, v in strategies.items() if k.startswith("single:")}
    ax.scatter(
        [v["cost"] for v in singles.values()],
        [v["quality"] for v in singles.values()],
        c="grey",
        s=18,
        zorder=3,
        label="single models",
    )
    ranked = sorted(singles, key=lambda s: -singles[s]["quality"])
    for name in ranked[:5] if len(singles) > 5 else ranked:
        ax.annotate(
            name.split(":", 1)[1],
            (singles[name]["cost"], singles[name]["quality"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    styles = {"random": ":", "oracle": "--"}
    routed = [n for n in strategies if not n.startswith("single:")]
    for name in routed:
        v = strategies[name]
        xs = [c for c, _ in v["curve"]]
        qs = [q for _, q in v["curve"]]
        label = name + (
            f" (APGR {v['apgr']:.3f})"
            if v.get("apgr") is not None
            else f" (AIQ {v['aiq']:.3f})"
            if v.get("aiq") is not None
            else ""
        )
        if name.startswith("cascade@"):
            styles[name] = "-."
        (line,) = ax.plot(xs, qs, styles.get(name, "-"), label=label, lw=1.4)
        ax.plot([v["cost"]], [v["quality"]], "o", color=line.get_color(), ms=5)
    costs = [v["cost"] for v in singles.values() if v["cost"] > 0]
    if unit.startswith("USD") and costs and max(costs) > 20 * min(costs):
        ax.set_xscale("log")  # list prices span orders of magnitude
        unit += ", log scale"
    ax.set_xlabel(f"cost ({unit}); dots: the default knob")
    ax.set_ylabel("quality (mean score)")
    ax.set_title(f"Routing frontier: {Path(info.get('table', '')).name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_learning(online: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = online["points"]
    fig, ax = plt.subplots(figsize=(8, 5))
    xs = [p["outcomes_seen"] for p in pts]
    ax.plot(xs, [p["quality"] for p in pts], "-o", ms=3, label=f"hybrid, quality at cost {online['cost']:.4g}")
    ax.plot(
        xs,
        [np.nan if p.get("random_quality") is None else p["random_quality"] for p in pts],
        "--",
        ms=3,
        color="C2",
        label="random at that cost",
    )
    ax.axhline(online["best_single_quality"], color="grey", ls="--", label=online["best_single"])
    if pts and pts[0].get("apgr") is not None:
        ax2 = ax.twinx()
        ax2.plot(xs, [p["apgr"] if p["apgr"] is not None else np.nan for p in pts], ":", color="C1", label="APGR")
        ax2.set_ylabel("APGR of the window")
        ax2.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("outcomes seen")
    ax.set_ylabel("quality")
    ax.set_title(f"Online replay ({online.get('order', 'table')} order): routing with only the outcomes seen so far")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(results: dict, info: dict | None = None, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    strategies = results["strategies"]
    info = info or {}
    two = any("apgr" in v for v in strategies.values())
    t = Table(title=f"routing replay: {Path(info.get('table', '')).name} ({info.get('rows', '?')} test rows)")
    cols = ["strategy", "quality", "cost", "AIQ", "match best at", "q @ 1/4 cost"]
    if two:
        cols += ["APGR", "CPT(50%)", "CPT(80%)"]
    for c in cols:
        t.add_column(c, justify="left" if c == "strategy" else "right")
    fmt = lambda v, f, suffix="": "-" if v is None else format(v, f) + suffix  # noqa: E731
    singles = sorted((s for s in strategies if s.startswith("single:")), key=lambda s: -strategies[s]["quality"])
    shown = singles if len(singles) <= 8 else singles[:5] + [min(singles, key=lambda s: strategies[s]["cost"])]
    best = strategies[singles[0]] if singles else {"cost": None}
    for name in [s for s in strategies if not s.startswith("single:")] + list(dict.fromkeys(shown)):
        v = strategies[name]
        share = (
            None
            if v.get("match_best_cost") is None or not best["cost"]
            else 100.0 * v["match_best_cost"] / best["cost"]
        )
        row = [
            name,
            f"{v['quality']:.4f}",
            f"{v['cost']:.4g}",
            fmt(v.get("aiq"), ".4f"),
            fmt(share, ".1f", "%"),
            fmt(v.get("quality_at_quarter_cost"), ".4f"),
        ]
        if two:
            row += [fmt(v.get("apgr"), ".3f"), fmt(v.get("cpt50"), ".1f", "%"), fmt(v.get("cpt80"), ".1f", "%")]
        t.add_row(*row)
    console.print(t)
    blind = info.get("embedding") or {}
    if blind.get("same_vector"):
        console.print(
            f"[yellow]routing is blind on {blind['same_vector']} of {blind['distinct_prompts']} distinct prompts[/]: "
            "they share their vector with another (cosine >= 0.999)"
        )
    if len(singles) > len(set(shown)):
        console.print(f"({len(singles) - len(set(shown))} more single models in results.json)")
    console.print(
        f"cost: {info.get('cost_unit')}; headline at price_sensitivity={info.get('price_sensitivity')}; "
        f"'match best at' = cost to reach the best single model's quality, as % of its cost; "
        f"classes from the {info.get('class_source')}; "
        f"k={info.get('k')}, min_similarity={info.get('min_similarity')}"
    )
