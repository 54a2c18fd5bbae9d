"""Replay the graph's routing on RouteLLM's MMLU outcome table and print the headline numbers.

    .venv/bin/python benchmarks/bench_router.py                    # the graph's k / min_similarity
    .venv/bin/python benchmarks/bench_router.py --k 64 --min-similarity 0
    .venv/bin/python benchmarks/bench_router.py --table ../shared/data/outcomes/alpacaeval-preferences.csv
    .venv/bin/python benchmarks/bench_router.py --table ../shared/data/outcomes/mmlupro-11models.csv
    .venv/bin/python benchmarks/bench_router.py --class-column        # the table's gold category as class

The table is read from ``../shared/data/outcomes/`` (relative to the repository root's parent, i.e.
beside the checkout); results.json, info.json and frontier.png go to --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fusiongraph.bench import run_bench  # noqa: E402

DEFAULT_TABLE = ROOT.parent / "shared" / "data" / "outcomes" / "mmlu-routellm.csv"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    ap.add_argument("--test-table", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--online", action="store_true")
    ap.add_argument("--cache", type=Path, default=None, help="embedding cache (default: the user cache dir)")
    ap.add_argument("--k", type=int, default=None, help="neighbours (default: FusionContext.k)")
    ap.add_argument("--min-similarity", type=float, default=None,
                    help="neighbour similarity floor (default: FusionContext.min_similarity)")
    ap.add_argument("--price-sensitivity", type=float, default=None,
                    help="headline knob (default: FusionContext.price_sensitivity)")
    ap.add_argument("--class-column", action="store_true",
                    help="the table's category column (gold labels) as the task class, not the taxonomy classifier")
    ap.add_argument("--judge-accuracy", type=float, action="append", default=None,
                    help="replay the cascade with a judge of this accuracy (repeatable; default 0.85)")
    args = ap.parse_args(argv)
    if not args.table.exists():
        print(f"outcome table {args.table} not found (expected beside the checkout in shared/data/outcomes/)",
              file=sys.stderr)
        return 2
    started = time.perf_counter()
    res = run_bench(args.table, args.out, test_path=args.test_table, folds=args.folds, online=args.online,
                    seed=args.seed, cache_path=args.cache, k=args.k, min_similarity=args.min_similarity,
                    price_sensitivity=args.price_sensitivity, class_column=args.class_column,
                    judge_accuracies=tuple(args.judge_accuracy or (0.85,)))
    s = res["strategies"]
    print(f"\nheadline ({args.table.name}, {time.perf_counter() - started:.1f} s, results in {args.out}):")
    best = max((n for n in s if n.startswith("single:")), key=lambda n: s[n]["quality"])
    for name in ("random", "taxonomy", "knn", "probe", "hybrid", *[n for n in s if n.startswith("cascade")], "oracle"):
        v = s[name]
        line = f"  {name:13s} quality {v['quality']:.4f}  cost {v['cost']:.4g} ({100 * v['cost'] / s[best]['cost']:.1f}%)"
        if v.get("aiq") is not None:
            mb = v.get("match_best_cost")
            share = "-" if mb is None else f"{100 * mb / s[best]['cost']:.1f}%"
            line += f"  AIQ {v['aiq']:.4f}  match-best {share}"
        if "apgr" in v:
            fmt = lambda x: "-" if x is None else f"{x:.1f}%"  # noqa: E731
            line += f"  APGR {v['apgr']:.3f}  CPT(50%) {fmt(v['cpt50'])}  CPT(80%) {fmt(v['cpt80'])}"
        print(line)
    print(f"  best single model: {best} quality {s[best]['quality']:.4f} cost {s[best]['cost']:.4g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
