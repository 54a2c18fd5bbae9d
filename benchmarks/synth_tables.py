"""Generate realistic synthetic outcome tables (CSV) for developing and stress-testing the router.

    .venv/bin/python benchmarks/synth_tables.py --seed 1 --rows 3000 --out /tmp/synth/seed1.csv
    .venv/bin/python benchmarks/synth_tables.py --seed 7 --models 8 --graded --out /tmp/synth/g7.csv

What it writes: the outcome-table format of ``../shared/data/outcomes/README.md`` (``prompt``, ``category``,
then ``score:/cost:/tokens:<model>`` per model), loadable with ``fusiongraph.eval.tables.load_table``.

How:

* Prompts: 12 topics (algebra word problems, python coding, organic chemistry, european history,
  contract law, poetry writing, translation to french, medical diagnosis, physics, geography trivia,
  sql, summarising), each with several templates filled from vocabulary lists (names, numbers, items),
  optional easy/hard modifiers, and ~35% long prompts that prepend a topic-specific context paragraph.
* Difficulty: per prompt, a latent difficulty shared by every model (so errors correlate) = topic
  level + template level + modifier + long-prompt effect + N(0, 1.2), plus ~9% "trap" prompts that
  almost every model fails (so the oracle stays below 1); part of it is visible in the text.
* Models: 12 real models at real USD list prices per 1M input/output tokens. Each has a general skill
  (roughly rising with price, with exceptions), per-topic offsets (cheap specialists, expensive models
  with a weak topic), a difficulty sensitivity, a long-prompt sensitivity, a noise level and a
  verbosity. P(correct) = sigmoid(skill + topic_offset + long_effect - hardness * difficulty + noise);
  score ~ Bernoulli(P) (or a Beta around P with ``--graded``). Output tokens are lognormal around the
  model's mean (scaled per topic, longer for long prompts).
* Cost (USD) = (len(prompt)/4 + 150) * price_in/1e6 + tokens * price_out/1e6.
* ``--seed`` perturbs the model skills and topic offsets (and plants one surprise specialist and one
  surprise weakness) and draws new prompts, so different seeds give genuinely different tables.
  numpy + stdlib only; deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import csv
import random
import string
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------------------------------
# models: name -> (price_in, price_out USD per 1M tokens, base skill, hardness, long-prompt effect,
#                  noise sd, mean output tokens)
# --------------------------------------------------------------------------------------------------
MODELS = {
    "claude-3-opus": (15.0, 75.0, 1.95, 0.85, 0.10, 1.00, 330),
    "claude-3.5-sonnet": (3.0, 15.0, 2.20, 0.80, 0.15, 0.95, 300),
    "gpt-4o": (2.5, 10.0, 2.10, 0.80, 0.10, 0.95, 280),
    "gemini-1.5-pro": (1.25, 5.0, 1.85, 0.85, 0.20, 1.00, 320),
    "mistral-large": (2.0, 6.0, 1.45, 0.90, 0.00, 1.05, 260),
    "qwen2-72b": (0.9, 0.9, 1.45, 0.90, -0.05, 1.05, 270),
    "llama-3.1-70b": (0.88, 0.88, 1.40, 0.90, -0.05, 1.05, 250),
    "gpt-4o-mini": (0.15, 0.6, 1.25, 0.95, -0.10, 1.05, 240),
    "claude-3-haiku": (0.25, 1.25, 0.95, 1.00, -0.10, 1.10, 200),
    "gemini-1.5-flash": (0.075, 0.3, 1.00, 1.00, -0.15, 1.10, 220),
    "deepseek-v2": (0.14, 0.28, 1.00, 1.00, -0.20, 1.10, 300),
    "llama-3.1-8b": (0.18, 0.18, 0.85, 1.05, -0.35, 1.15, 230),
}

TOPICS = [
    "algebra",
    "python",
    "organic_chemistry",
    "european_history",
    "contract_law",
    "poetry",
    "french_translation",
    "medical_diagnosis",
    "physics",
    "geography",
    "sql",
    "summarising",
]

# topic -> (mean difficulty, output-length factor)
TOPIC_LEVEL = {
    "algebra": (0.35, 0.9),
    "python": (0.30, 1.6),
    "organic_chemistry": (0.45, 1.0),
    "european_history": (-0.10, 1.0),
    "contract_law": (0.35, 1.2),
    "poetry": (-0.05, 0.8),
    "french_translation": (-0.20, 0.5),
    "medical_diagnosis": (0.40, 1.0),
    "physics": (0.40, 1.0),
    "geography": (-0.40, 0.35),
    "sql": (0.10, 0.9),
    "summarising": (-0.25, 0.7),
}

# archetypal per-topic offsets (the seed adds noise and a couple of surprises on top)
ARCHETYPES = {
    "claude-3-opus": {"algebra": -0.9, "physics": -0.3, "poetry": 0.5, "contract_law": 0.3},
    "claude-3.5-sonnet": {"python": 0.6, "sql": 0.3, "poetry": 0.3, "algebra": -0.2},
    "gpt-4o": {"poetry": -0.5, "algebra": 0.2, "physics": 0.2},
    "gemini-1.5-pro": {"geography": 0.5, "medical_diagnosis": 0.4, "summarising": 0.3, "sql": -0.4},
    "mistral-large": {"french_translation": 1.1, "european_history": 0.4, "python": -0.2},
    "qwen2-72b": {"algebra": 0.8, "physics": 0.4, "poetry": -0.5, "contract_law": -0.3},
    "llama-3.1-70b": {"european_history": 0.4, "contract_law": 0.3, "summarising": 0.2},
    "gpt-4o-mini": {"sql": 0.4, "geography": 0.2, "organic_chemistry": -0.2},
    "claude-3-haiku": {"summarising": 0.8, "poetry": 0.6, "algebra": -0.5},
    "gemini-1.5-flash": {"geography": 0.7, "summarising": 0.4, "french_translation": 0.3},
    "deepseek-v2": {"python": 1.3, "sql": 1.0, "algebra": 0.4, "poetry": -0.6, "french_translation": -0.4},
    "llama-3.1-8b": {"poetry": 0.3, "medical_diagnosis": -0.6, "organic_chemistry": -0.4},
}

import synth_topics_a  # noqa: E402,F401  (registers its topics in T)
import synth_topics_b  # noqa: E402,F401
from synth_text import COMMON, NAMES, T  # noqa: E402

# global calibration: spread of the shared latent difficulty, scale of per-model noise, skill shift, share of trap prompts
LATENT_SD, NOISE_SCALE, SKILL_SHIFT, TRAP_P = 1.2, 0.7, 0.4, 0.09

GENERIC_OPENERS = ["", "", "", "Hi! ", "Quick question: ", "Please help. ", "Hello! ", "Can you help me? "]


def _fill(text: str, vocab: dict, r: random.Random) -> str:
    values = {}
    for _, field, _, _ in string.Formatter().parse(text):
        if field and field not in values:
            src = vocab.get(field, COMMON.get(field))
            if src is None:
                raise KeyError(f"no vocabulary for slot {field!r}")
            values[field] = src(r) if callable(src) else r.choice(src)
    if "name" in values and "name2" in values and values["name2"] == values["name"]:
        values["name2"] = r.choice([n for n in NAMES if n != values["name"]])
    return text.format(**values)


def make_prompt(topic: str, r: random.Random) -> tuple[str, float, bool]:
    """One prompt of ``topic``: (text, visible difficulty, is_long)."""
    spec = T[topic]
    tmpl, diff = r.choice(spec["templates"])
    body = _fill(tmpl, spec["vocab"], r)
    u = r.random()
    if u < 0.2:
        body += " " + r.choice(spec["easy"])
        diff -= 0.5
    elif u < 0.4:
        body += " " + r.choice(spec["hard"])
        diff += 0.7
    is_long = r.random() < 0.35
    if is_long:
        sentences = r.sample(spec["context"], k=min(len(spec["context"]), r.randint(2, 5)))
        body = " ".join(sentences) + ("\n\n" if r.random() < 0.5 else " ") + body
    return r.choice(GENERIC_OPENERS) + body, diff, is_long


# --------------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------------
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def success(skill, offset, long_eff, is_long, hard, d, noise):
    """P(correct) of each model (broadcast): the one formula the generator draws from and synth_bound.py
    takes expectations of."""
    return _sigmoid(skill + offset + long_eff * is_long - hard * d + noise)


def mean_tokens(verbosity, length_factor, is_long, d):
    """The median of a model's output tokens (lognormal, sd TOKEN_SD of its log) for a row (broadcast)."""
    return verbosity * length_factor * np.where(is_long, 1.5, 1.0) * np.exp(0.15 * d)


TOKEN_SD = 0.45


def hidden_difficulty(n: int, rng: np.random.Generator) -> np.ndarray:
    """The part of each prompt's difficulty its text does not show: N(0, LATENT_SD), plus a few "trap"
    prompts (ambiguous, misleading or mislabelled) that almost every model gets wrong."""
    latent = rng.normal(0, LATENT_SD, n)
    return latent + (rng.random(n) < TRAP_P) * rng.uniform(3.0, 7.0, n)


def cost_usd(prompt_tokens, tokens, price_in, price_out):
    """A call's USD cost (broadcast): the prompt plus a 150-token system preamble in, the answer out."""
    return (prompt_tokens + 150) * price_in / 1e6 + tokens * price_out / 1e6


def pick_models(k: int, rng: np.random.Generator) -> list[str]:
    names = list(MODELS)
    if k >= len(names):
        return names
    by_price = sorted(names, key=lambda m: MODELS[m][0] + MODELS[m][1])
    keep = {by_price[0], by_price[-1]}  # always the cheapest and the priciest
    rest = [m for m in names if m not in keep]
    keep |= set(rng.choice(rest, size=max(0, k - 2), replace=False).tolist())
    return [m for m in names if m in keep]


def generate(seed: int, rows: int = 3000, n_models: int | None = None, graded: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    r = random.Random(seed * 7919 + 17)
    models = pick_models(n_models or len(MODELS), rng)
    m, nt = len(models), len(TOPICS)

    # model parameters, perturbed by the seed
    skill = np.array([MODELS[x][2] for x in models]) + SKILL_SHIFT + rng.normal(0, 0.25, m)
    hard = np.array([MODELS[x][3] for x in models]) * rng.uniform(0.85, 1.15, m)
    long_eff = np.array([MODELS[x][4] for x in models]) + rng.normal(0, 0.1, m)
    noise_sd = np.array([MODELS[x][5] for x in models]) * NOISE_SCALE * rng.uniform(0.9, 1.1, m)
    verbosity = np.array([MODELS[x][6] for x in models]) * rng.lognormal(0, 0.15, m)
    offset = rng.normal(0, 0.3, (m, nt))
    for i, x in enumerate(models):
        for t, v in ARCHETYPES.get(x, {}).items():
            offset[i, TOPICS.index(t)] += v * rng.uniform(0.6, 1.3)
    price_in = np.array([MODELS[x][0] for x in models])
    price_out = np.array([MODELS[x][1] for x in models])
    order = np.argsort(price_in + price_out)
    cheap_half, pricey_half = order[: max(1, m // 2)], order[m // 2 :]
    # surprises: a cheap model that is excellent at one topic, a pricey one that is poor at one topic
    offset[rng.choice(cheap_half), rng.integers(nt)] += 1.3
    offset[rng.choice(pricey_half), rng.integers(nt)] -= 1.1
    topic_weight = rng.dirichlet(np.full(nt, 8.0))
    topic_shift = rng.normal(0, 0.15, nt)

    prompts, cats, score, tokens, cost = [], [], np.zeros((rows, m)), np.zeros((rows, m)), np.zeros((rows, m))
    seen_d, seen_long = np.zeros(rows), np.zeros(rows, dtype=bool)  # what the text shows of each row's difficulty
    topic_idx = rng.choice(nt, size=rows, p=topic_weight)
    latent = hidden_difficulty(rows, rng)
    for i in range(rows):
        t = topic_idx[i]
        topic = TOPICS[t]
        text, vis, is_long = make_prompt(topic, r)
        prompts.append(text)
        cats.append(topic)
        seen_d[i], seen_long[i] = (
            TOPIC_LEVEL[topic][0] + topic_shift[t] + 0.8 * vis + (0.2 if is_long else 0.0),
            is_long,
        )
        d = seen_d[i] + latent[i]
        p = success(skill, offset[:, t], long_eff, is_long, hard, d, rng.normal(0, 1, m) * noise_sd)
        if graded:
            conc = 6.0
            score[i] = np.clip(rng.beta(p * conc + 1e-3, (1 - p) * conc + 1e-3), 0, 1).round(3)
        else:
            score[i] = (rng.random(m) < p).astype(float)
        mu = mean_tokens(verbosity, TOPIC_LEVEL[topic][1], is_long, d)
        tok = np.maximum(5, np.round(rng.lognormal(np.log(mu), TOKEN_SD))).astype(int)
        tokens[i] = tok
        cost[i] = cost_usd(len(text) / 4, tok, price_in, price_out)
    # the generator's own parameters and each row's visible part: what a router that knew the generator
    # exactly (but not the hidden per-prompt latent and per-model noise) would route on (synth_bound.py)
    truth = dict(
        topic=topic_idx,
        seen_d=seen_d,
        is_long=seen_long,
        prompt_tokens=np.array([len(x) / 4 for x in prompts]),
        skill=skill,
        offset=offset,
        long_eff=long_eff,
        hard=hard,
        noise_sd=noise_sd,
        verbosity=verbosity,
        price_in=price_in,
        price_out=price_out,
    )
    return dict(prompts=prompts, categories=cats, models=models, scores=score, costs=cost, tokens=tokens, truth=truth)


def write_csv(table: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    models = table["models"]
    header = ["prompt", "category"] + [f"{k}:{x}" for x in models for k in ("score", "cost", "tokens")]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, text in enumerate(table["prompts"]):
            row = [text, table["categories"][i]]
            for j in range(len(models)):
                s = table["scores"][i, j]
                row += [f"{s:g}", f"{table['costs'][i, j]:.8f}", str(int(table["tokens"][i, j]))]
            w.writerow(row)


def sanity(table: dict) -> str:
    s, c, models = table["scores"], table["costs"], table["models"]
    lines = [f"{len(s)} rows, {len(models)} models"]
    for j in np.argsort(-c.mean(0)):
        lines.append(f"  {models[j]:<20} score {s[:, j].mean():.3f}  cost ${c[:, j].mean():.6f}")
    best = int(np.argmax(s.mean(0)))
    cheapest = int(np.argmin(c.mean(0)))
    priciest = int(np.argmax(c.mean(0)))
    top = s.max(1)
    # oracle: per prompt, the cheapest model reaching the row's best score
    pick = np.where(s >= top[:, None] - 1e-12, c, np.inf).argmin(1)
    oracle_cost = c[np.arange(len(s)), pick].mean()
    lines.append(
        f"  best single: {models[best]} {s[:, best].mean():.3f} @ ${c[:, best].mean():.6f}"
        f"{'  (= priciest)' if best == priciest else '  (not the priciest)'}"
    )
    lines.append(f"  cheapest:    {models[cheapest]} {s[:, cheapest].mean():.3f}")
    lines.append(f"  oracle:      {top.mean():.3f} @ ${oracle_cost:.6f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--models", type=int, default=len(MODELS), help=f"how many models (2..{len(MODELS)})")
    ap.add_argument("--graded", action="store_true", help="scores in [0, 1] instead of 0/1")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if not 2 <= args.models <= len(MODELS):
        ap.error(f"--models must be between 2 and {len(MODELS)}")
    table = generate(args.seed, args.rows, args.models, args.graded)
    write_csv(table, args.out)
    if not args.quiet:
        print(f"wrote {args.out} (seed {args.seed})")
        print(sanity(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
