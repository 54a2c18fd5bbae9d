"""Privacy detection and the answer cache, measured (README: "Privacy and the answer cache").

    python benchmarks/bench_privacy.py [--table ../shared/data/outcomes/mmlupro-11models.csv] [--n 2000]
        [--out bench-out/privacy.json]

1. Detection on adversarial formats: generated values (Luhn-valid card numbers, IBANs with valid check digits,
   e-mail addresses, phone numbers, SSNs, provider API keys) written in many formats (spaced, dashed, digit by
   digit, dots, full-width and Arabic-Indic digits, split over lines, obfuscated "at"/"dot"), each inside a
   sentence; the share of each format that `fusiongraph.privacy.scan` flags.
2. False positives: the share of the table's prompts (no personal data: benchmark questions) flagged, by kind.
3. The answer cache on paraphrase pairs: for prompts of the table, a rewritten paraphrase (case, spacing,
   punctuation, a polite prefix) should hit; the most similar *other* prompt of the table (a near-duplicate
   that asks something else: same stem, other numbers or options) must not. Hit rate and false-hit rate by
   similarity threshold, through `fusiongraph.cache.lookup` on a real SQLite store.
4. The latency of a hit through the cache node's path (embedding an unseen text with MiniLM, the FAISS search,
   the store look-up) and of the privacy scan that runs before it, p50/p99 in ms.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def luhn_complete(prefix: str) -> str:
    digits = [int(c) for c in prefix]
    for check in range(10):
        total = 0
        for i, d in enumerate(reversed(digits + [check])):
            total += d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2)
        if total % 10 == 0:
            return prefix + str(check)
    raise AssertionError


def iban_de(rng: random.Random) -> str:
    bban = "".join(str(rng.randrange(10)) for _ in range(18))
    numeric = int(bban + "131400")  # D=13 E=14, then "00"
    return f"DE{98 - numeric % 97:02d}{bban}"


def to_fullwidth(s: str) -> str:
    return "".join(chr(ord(c) - 48 + 0xFF10) if c.isdigit() else c for c in s)


def to_arabic_indic(s: str) -> str:
    return "".join(chr(ord(c) - 48 + 0x0660) if c.isdigit() else c for c in s)


def groups(s: str, n: int, sep: str) -> str:
    return sep.join(s[i : i + n] for i in range(0, len(s), n))


def adversarial_cases(rng: random.Random, per_format: int = 20) -> dict[str, list[str]]:
    cases: dict[str, list[str]] = {}

    def add(name, make):
        cases[name] = [make() for _ in range(per_format)]

    def card():
        return luhn_complete(rng.choice(["4", "51", "37", "6011"]) + "".join(str(rng.randrange(10)) for _ in range(11)))

    add("card: plain", lambda: f"My card {card()} was charged twice.")
    add("card: spaced 4-4-4-4", lambda: f"Card number {groups(card(), 4, ' ')} please refund.")
    add("card: dashed", lambda: f"Use {groups(card(), 4, '-')} for the order.")
    add("card: digit by digit", lambda: f"card {' '.join(card())} thanks")
    add("card: dots", lambda: f"card {groups(card(), 4, '.')} ok")
    add("card: full-width digits", lambda: f"カード {to_fullwidth(groups(card(), 4, ' '))} です")
    add("card: Arabic-Indic digits", lambda: f"card {to_arabic_indic(card())} here")
    add("card: split over lines", lambda: (lambda c: f"card {c[:8]}\n{c[8:]} end")(card()))
    add("IBAN: spaced", lambda: f"Pay to {groups(iban_de(rng), 4, ' ')} today.")
    add("IBAN: compact", lambda: f"IBAN {iban_de(rng)}.")
    users = ["jane.roe", "j.smith", "m_gonzalez", "li.wei88", "a-b"]
    add("e-mail: plain", lambda: f"write to {rng.choice(users)}@example.org soon")
    add("e-mail: obfuscated 'at'/'dot'", lambda: f"write to {rng.choice(users)} at example dot org soon")
    add("phone: +1 (415) 555-0132", lambda: f"call +1 (415) 555-{rng.randrange(1000, 9999)} tomorrow")
    add("phone: +44 20 7946 0958", lambda: f"ring me on +44 20 7946 {rng.randrange(1000, 9999)}")
    add("US SSN", lambda: f"my SSN is {rng.randrange(100, 665)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}")

    def key(prefix: str, n: int, alphabet: str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"):
        return prefix + "".join(rng.choice(alphabet) for _ in range(n))

    add("AWS access key", lambda: f"aws key {key('AKIA', 16, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567')} in config")
    add("GitHub token", lambda: f"token {key('ghp_', 36)} for CI")
    add("OpenAI-style key", lambda: f"my key is {key('sk-proj-', 40)}")
    add("key split over lines", lambda: (lambda k: f"key: {k[:20]}\n{k[20:]}")(key("sk-proj-", 40)))
    add(
        "private key block",
        lambda: "-----BEGIN RSA PRIVATE KEY-----\nMIIEow" + key("", 40) + "\n-----END RSA PRIVATE KEY-----",
    )
    names = ["Maria Gonzalez", "John Smith", "Wei Zhang", "Fatima Khan"]
    add("name with a cue ('patient X')", lambda: f"Patient {rng.choice(names)} reports chest pain")
    add("street address", lambda: f"Ship it to {rng.randrange(1, 999)} Evergreen Terrace, Springfield")
    return cases


def percentiles(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"p50": round(statistics.median(xs), 2), "p99": round(xs[min(len(xs) - 1, int(0.99 * len(xs)))], 2)}


def paraphrase(text: str, rng: random.Random) -> str:
    """A rewording that asks the same thing: case, spacing, punctuation and a polite prefix."""
    t = " ".join(text.split())
    if rng.random() < 0.5:
        t = t.lower()
    t = t.rstrip("?.! ") + rng.choice(["?", " ?", ".", ""])
    return rng.choice(["", "Please answer: ", "Question: ", "Can you help? "]) + t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=ROOT.parent / "shared/data/outcomes/mmlupro-11models.csv")
    parser.add_argument("--n", type=int, default=2000, help="prompts for the false-positive rate")
    parser.add_argument("--pairs", type=int, default=300, help="paraphrase / near-duplicate pairs for the cache")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "privacy.json")
    args = parser.parse_args()
    rng = random.Random(0)

    from fusiongraph import privacy as pv

    t0 = time.perf_counter()
    pv.scan("warm up: jane@example.org")
    load_s = time.perf_counter() - t0
    detection = {}
    for name, texts in adversarial_cases(rng).items():
        hits = sum(1 for t in texts if pv.scan(t))
        detection[name] = round(hits / len(texts), 3)
        print(f"{name:36s} {detection[name]:.2f}", flush=True)

    from fusiongraph.eval.tables import load_table

    table = load_table(args.table)
    prompts = list(dict.fromkeys(table.prompts))
    sample = random.Random(1).sample(prompts, min(args.n, len(prompts)))
    flagged, kinds, scan_ms = 0, {}, []
    for p in sample:
        t = time.perf_counter()
        found = pv.scan(p)
        scan_ms.append((time.perf_counter() - t) * 1000)
        if found:
            flagged += 1
            for f in found:
                kinds[f.kind] = kinds.get(f.kind, 0) + 1
    fp = {"prompts": len(sample), "flagged": flagged, "rate": round(flagged / len(sample), 4), "kinds": kinds}
    print("false positives:", fp, flush=True)

    cache = bench_cache(prompts, args.pairs, rng)
    report = {
        "table": str(args.table.name),
        "detector_load_s": round(load_s, 2),
        "detection": detection,
        "false_positives": fp,
        "scan_ms": percentiles(scan_ms),
        "cache": cache,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "detection"}, indent=2))


def bench_cache(prompts: list[str], n_pairs: int, rng: random.Random) -> dict:
    """Hit and false-hit rates through fusiongraph.cache.lookup on a real store, and the hit latency."""
    from fusiongraph import cache as answer_cache
    from fusiongraph.context import FusionContext
    from fusiongraph.defaults import DEFAULT_TAXONOMY
    from fusiongraph.eval.bench.run import default_cache_path
    from fusiongraph.models.roster import ModelSpec, Roster
    from fusiongraph.resources import Resources
    from fusiongraph.routing.embeddings import Embedder, MiniLMEmbeddings
    from fusiongraph.routing.taxonomy import Taxonomy
    from fusiongraph.store import Outcome, open_store

    embedder = Embedder(MiniLMEmbeddings(), cache_path=default_cache_path())
    short = [p for p in prompts if len(p) < 600]
    pool = random.Random(3).sample(short, min(4000, len(short)))
    pool_vecs = embedder.embed(pool)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "store", embedder.dim, embedder.name)
        roster = Roster([ModelSpec(id="m", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")])
        res = Resources(roster, Taxonomy.from_yaml(DEFAULT_TAXONOMY), embedder, store)
        fp = roster["m"].fingerprint()
        # the cached subtasks: every pool prompt (so near-duplicates are in the store)
        ids = store.record_many(
            [(p, v, "factual_qa", [Outcome("m", 1.0, True, answer="A")]) for p, v in zip(pool, pool_vecs)]
        )
        for sid in ids:
            store.cache_put(sid, answer_cache.OPEN_SCOPE, "m", fp, "factual_qa", "A")
        # positives: paraphrases of pool prompts; negatives: the nearest other pool prompt's text asked fresh
        positives = [paraphrase(p, rng) for p in pool[:n_pairs]]
        sims = pool_vecs @ pool_vecs.T
        np.fill_diagonal(sims, -1)
        nearest = sims.argmax(axis=1)
        order = np.argsort(-sims.max(axis=1))  # the hardest near-duplicates first
        negatives, neg_of = [], []
        for i in order:
            j = int(nearest[i])
            if pool[i].strip().lower() != pool[j].strip().lower():
                negatives.append(pool[i])
                neg_of.append(j)
            if len(negatives) >= n_pairs:
                break
        rates = {}
        for threshold in (0.9, 0.95, 0.97, 0.99):
            ctx = FusionContext(cache_similarity=threshold)
            hit = sum(
                1
                for p in positives
                if answer_cache.lookup(res, ctx, embedder.embed_one(p), "factual_qa", ["m"], p) is not None
            )
            false_hit = embedding_only = 0
            for text, j in zip(negatives, neg_of):
                # asked fresh: the store holds the prompt itself too, so look past it to the near-duplicate
                got = store.cached_answers(embedder.embed_one(text), answer_cache.OPEN_SCOPE, threshold, 0.0, k=4)
                near = [g for g in got if g["subtask_id"] == ids[j]]
                false_hit += any(answer_cache.same_question(text, g["text"]) for g in near)
                embedding_only += bool(near)
            rates[str(threshold)] = {
                "hit_rate": round(hit / len(positives), 3),
                "false_hit_rate": round(false_hit / len(negatives), 3),
                "false_hit_rate_embedding_only": round(embedding_only / len(negatives), 3),
            }
            print("cache", threshold, rates[str(threshold)], flush=True)
        # latency of a hit: an unseen paraphrase, embedded (no embedding cache) + search + look-up
        ctx = FusionContext()
        plain = Embedder(MiniLMEmbeddings())
        res.embedder = plain
        lat, scan, hits = [], [], 0
        from fusiongraph import privacy as pv

        queries = [paraphrase(p, rng) for p in pool[n_pairs : n_pairs + 200]]
        short = [paraphrase(p, rng) for p in sorted(pool, key=len)[:200]]  # chat-length questions
        lat_short = []
        for qs, out in ((queries, lat), (short, lat_short)):
            for q in qs:  # the cache node's path alone: embedding (nothing cached) + search + look-up
                t = time.perf_counter()
                hits += answer_cache.lookup(res, ctx, plain.embed_one(q), "factual_qa", ["m"], q) is not None
                out.append((time.perf_counter() - t) * 1000)
        for q in queries:  # the privacy node before it, measured apart
            t = time.perf_counter()
            pv.scan(q)
            scan.append((time.perf_counter() - t) * 1000)
        store.close()
    return {
        "store_entries": len(pool),
        "pairs": {"paraphrases": len(positives), "near_duplicates": len(negatives)},
        "by_threshold": rates,
        "hit_latency_ms": percentiles(lat),
        "hit_latency_ms_short": percentiles(lat_short),
        "query_chars_median": {
            "table": statistics.median(map(len, queries)),
            "short": statistics.median(map(len, short)),
        },
        "latency_queries_hit": hits,
        "privacy_scan_ms": percentiles(scan),
    }


if __name__ == "__main__":
    main()
