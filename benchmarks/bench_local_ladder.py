"""The local ladder's speed on this machine: prompt and output tokens per second of each in-process model of
the shipped roster (the figures behind `tokens_per_s` in fusiongraph/defaults/models.yaml), its compute seconds per call and
the process's resident memory with every tier loaded.

    .venv/bin/python benchmarks/bench_local_ladder.py [--runs 3] [--json]

Run it beside other work to see the loaded figures (the roster's nominal rates are loaded ones).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

PROMPT = (
    "A farmer has 17 sheep. He buys 3 times as many goats as sheep, then sells 12 goats. "
    "How many animals does he have now? Think step by step, then give the final number."
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from langchain_core.messages import HumanMessage

    from fusiongraph.defaults import DEFAULT_MODELS
    from fusiongraph.models.roster import Roster

    roster = Roster.from_yaml(DEFAULT_MODELS)
    available, skipped = roster.availability(local_only=True, answering=True)
    rows = []
    for model_id in available:
        started = time.perf_counter()
        chat = roster.chat_model(model_id, args.max_tokens, 600)
        llama = chat._model().llama  # load (and join the parts) outside the timed calls
        load_s = time.perf_counter() - started
        prompt_tokens = len(llama.tokenize(PROMPT.encode()))
        prefill, decode, compute = [], [], []
        for i in range(args.runs):
            # prompt speed: one output token; output speed: the rest of a full answer
            llama.reset()
            t0 = time.perf_counter()
            chat.bind(max_tokens=1).invoke([HumanMessage(PROMPT + " " * i)])
            t_prefill = time.perf_counter() - t0
            llama.reset()
            msg = chat.invoke([HumanMessage(PROMPT + " " * i)])
            n_out = msg.usage_metadata["output_tokens"]
            n_in = msg.usage_metadata["input_tokens"]
            c = msg.response_metadata["compute_s"]
            prefill.append(n_in / t_prefill)
            decode.append(max(n_out - 1, 1) / max(c - t_prefill, 1e-6))
            compute.append(c)
        rows.append(
            {
                "model": model_id,
                "load_s": round(load_s, 2),
                "prompt_tokens": prompt_tokens,
                "prompt_tok_s": round(sorted(prefill)[len(prefill) // 2], 1),
                "output_tok_s": round(sorted(decode)[len(decode) // 2], 2),
                "compute_s_per_answer": round(sorted(compute)[len(compute) // 2], 2),
                "usd_per_answer": round(roster[model_id].call_cost(0, 0, sorted(compute)[len(compute) // 2]), 7),
            }
        )
    out = {
        "models": rows,
        "skipped": skipped,
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for r in rows:
        print(
            f"{r['model']:<22} load {r['load_s']:>5.1f} s  prompt {r['prompt_tok_s']:>6.1f} tok/s  "
            f"output {r['output_tok_s']:>5.2f} tok/s  {r['compute_s_per_answer']:>5.1f} s/answer  "
            f"${r['usd_per_answer']:.7f}/answer"
        )
    print(f"max RSS with every tier loaded: {out['max_rss_mb']} MB")


if __name__ == "__main__":
    main()
