"""RAG-shaped outcome tables: the same questions with and without a long context before them.

    .venv/bin/python benchmarks/rag_tables.py --out /tmp/rag --rows 600 --seed 0

Writes ``plain.csv`` (the questions alone), ``rag.csv`` (each question after a long context: "Use the context
to answer." + 2-4k characters of documents + the question, last) and ``template.csv`` (each question after the
same 2k-character instruction block), in the outcome-table format (``fusiongraph.eval.tables``). The outcomes
are the same in all three: a cheap model right on one kind of question and wrong on another, a mid-priced
coder the other way round, and a dear model right on 75% of every kind. Routing from the question reaches the cheapest
right model; routing from the context (or the shared block) cannot tell the kinds apart.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synth_tables as st  # noqa: E402

# kind -> P(right) of (small, coder, large)
KINDS = {
    "geography": (0.95, 0.20, 0.75),
    "summarising": (0.95, 0.25, 0.75),
    "poetry": (0.92, 0.20, 0.75),
    "french_translation": (0.95, 0.20, 0.75),
    "python": (0.10, 0.95, 0.75),
    "sql": (0.10, 0.92, 0.75),
    "algebra": (0.15, 0.95, 0.75),
    "physics": (0.15, 0.92, 0.75),
}
MODELS = {"small": 0.0002, "coder": 0.0006, "large": 0.004}  # USD per answer
INSTRUCTIONS = (
    "You are a careful assistant working for a large organisation. Read the request below and answer it as "
    "well as you can. Be accurate and concise, do not invent facts, state any assumption you make, and keep "
    "a neutral, professional tone. If the request is ambiguous, choose the most likely reading and say so. "
) * 5


def document(r: random.Random) -> str:
    """2-4k characters of sentences from random topics: a context unrelated to the question's kind."""
    sentences = [s for spec in st.T.values() for s in spec["context"]]
    out: list[str] = []
    while sum(len(s) + 1 for s in out) < r.randint(2000, 4000):
        out.append(r.choice(sentences))
    return " ".join(out)


def generate(rows: int, seed: int) -> dict:
    r = random.Random(seed)
    rng = np.random.default_rng(seed)
    kinds = list(KINDS)
    questions, categories, contexts = [], [], []
    for i in range(rows):
        kind = kinds[i % len(kinds)]
        questions.append(st.make_prompt(kind, r)[0])
        categories.append(kind)
        contexts.append(document(r))
    p = np.array([KINDS[k] for k in categories])
    scores = (rng.random(p.shape) < p).astype(float)
    return {"questions": questions, "categories": categories, "contexts": contexts, "scores": scores}


def write(table: dict, out: Path) -> dict[str, Path]:
    shapes = {
        "plain": lambda q, c: q,
        "rag": lambda q, c: f"Use the context to answer.\n\nContext:\n{c}\n\nQuestion: {q}",
        "template": lambda q, c: f"{INSTRUCTIONS}\n\n{q}",
    }
    paths = {}
    for name, shape in shapes.items():
        prompts = [shape(q, c) for q, c in zip(table["questions"], table["contexts"])]
        n = len(prompts)
        costs = np.tile(np.array(list(MODELS.values())), (n, 1))
        tokens = np.full((n, len(MODELS)), 200)
        paths[name] = out / f"{name}.csv"
        st.write_csv(
            {
                "prompts": prompts,
                "categories": table["categories"],
                "models": list(MODELS),
                "scores": table["scores"],
                "costs": costs,
                "tokens": tokens,
            },
            paths[name],
        )
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    paths = write(generate(args.rows, args.seed), args.out)
    print("\n".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
