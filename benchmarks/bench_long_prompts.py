"""Long prompts routed by what they ask: the RAG-shaped tables of rag_tables.py through the replay bench, with
the graph's embedder (long texts as their frame and what they ask) and with the model reading only its
window (what a plain sentence encoder does); and embedding throughput against sentence-transformers' own
batched encode of the same prompts, in the same run.

    .venv/bin/python benchmarks/bench_long_prompts.py --rows 400 --out bench-out/long-prompts

Classes come from the graph's taxonomy classifier (as the live graph runs); the headline knob is the graph's
default. `oracle_choice`: how often a strategy's pick is the oracle's (the cheapest model with the best
score). Writes DIR/long-prompts.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import rag_tables  # noqa: E402

from fusiongraph.eval.bench import run_bench  # noqa: E402
from fusiongraph.eval.tables import load_table  # noqa: E402
from fusiongraph.routing.embeddings import Embedder, MiniLMEmbeddings  # noqa: E402

STRATEGIES = ("taxonomy", "knn", "hybrid")


class WindowOnly(MiniLMEmbeddings):
    """The same model, its window not announced: the Embedder embeds every text whole (the model then reads
    only its first 256 tokens), as before long texts were represented by what they ask."""

    window_tokens = 0


def route(paths: dict[str, Path], out: Path) -> dict:
    found: dict = {}
    for label, model in (("asks", MiniLMEmbeddings()), ("window only", WindowOnly())):
        for shape, path in paths.items():
            res = run_bench(path, out / f"{label}-{shape}", embedder=Embedder(model), quiet=True)
            info = json.loads((out / f"{label}-{shape}" / "info.json").read_text())
            found.setdefault(label, {})[shape] = {
                "oracle_choice": {s: res["strategies"][s]["oracle_choice"] for s in STRATEGIES},
                "quality": {s: round(res["strategies"][s]["quality"], 4) for s in STRATEGIES},
                "same_vector": info["embedding"]["same_vector"],
                "distinct_prompts": info["embedding"]["distinct_prompts"],
            }
        for shape in paths:
            if shape != "plain":
                found[label][shape]["vs_plain"] = {
                    s: round(
                        found[label][shape]["oracle_choice"][s] / max(found[label]["plain"]["oracle_choice"][s], 1e-9),
                        3,
                    )
                    for s in STRATEGIES
                }
    return found


def throughput(paths: dict[str, Path], repeat: int = 2) -> dict:
    model = MiniLMEmbeddings()
    out = {}
    for shape, path in paths.items():
        prompts = load_table(path).prompts
        best_ours = best_st = float("inf")
        for _ in range(repeat):  # best of `repeat`: the machine is shared
            t = time.perf_counter()
            Embedder(model, memory_items=0).embed(prompts)
            best_ours = min(best_ours, time.perf_counter() - t)
            t = time.perf_counter()
            model._model.encode(prompts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
            best_st = min(best_st, time.perf_counter() - t)
        out[shape] = {
            "prompts": len(prompts),
            "fusiongraph_prompts_per_s": round(len(prompts) / best_ours, 1),
            "sentence_transformers_prompts_per_s": round(len(prompts) / best_st, 1),
            "ratio": round(best_ours / best_st, 2),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench-out/long-prompts"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = rag_tables.write(rag_tables.generate(args.rows, args.seed), Path(tmp))
        result = {
            "rows": args.rows,
            "seed": args.seed,
            "routing": route(paths, args.out),
            "throughput": throughput(paths),
        }
    (args.out / "long-prompts.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
