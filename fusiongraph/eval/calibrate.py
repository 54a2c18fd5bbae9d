"""Calibration (EMAFusion's synthesized training data): every seed prompt through every configured model.

Each answer is judged like a cascade attempt and recorded in the outcome store with source
"calibrate", one transaction per prompt, so an interrupted run resumes at the first prompt it had not
finished.

Labelled attempts for the calibrated acceptance (fusiongraph/judging/acceptance.py): a seed line with a
``reference`` (and optional ``match``, as judge-eval reads them) labels its answers right or wrong, and an
answer an exact check decided (plain arithmetic) is labelled by that check; with any labels the
calibrator is refitted on them and the earlier ones and saved beside the store.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tqdm import tqdm

from fusiongraph.attempt import invoke_with_retries, outcomes_from_attempts, prepare_call, run_attempt
from fusiongraph.context import FusionContext
from fusiongraph.resources import get_resources
from fusiongraph.store.types import text_hash
from fusiongraph.text import clean_query


def load_prompts(path: str | Path) -> list[str]:
    """JSONL: each line a JSON string or an object with a "prompt" field. Errors name the line."""
    prompts = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {n}: not valid JSON ({exc.msg})") from None
            text = item.get("prompt") if isinstance(item, dict) else item
            if not isinstance(text, str):
                raise ValueError(f'{path}, line {n}: expected a string or an object with a "prompt" string')
            try:
                prompts.append(clean_query(text))
            except ValueError as exc:
                raise ValueError(f"{path}, line {n}: {exc}") from None
    return prompts


def load_references(path: str | Path) -> dict[str, tuple[str, str | None]]:
    """Seed prompt -> (reference, match) for the lines that carry a reference."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            item = json.loads(line) if line.strip() else None
            if isinstance(item, dict) and isinstance(item.get("prompt"), str) and item.get("reference") is not None:
                out[clean_query(item["prompt"])] = (str(item["reference"]), item.get("match"))
    return out


def label(attempt, prompt: str, task_class: str | None, reference: tuple[str, str | None] | None):
    """The attempt as a labelled row: by its reference, else by an exact check that decided it, else None."""
    from fusiongraph.judging.acceptance import LabelledAttempt
    from fusiongraph.text import is_correct

    if attempt.get("error"):
        return None
    if reference is not None:
        correct = is_correct(attempt.get("answer") or "", *reference)
        return LabelledAttempt.from_attempt(attempt, task_class, correct, "calibrate", prompt)
    exact = [v for v in attempt.get("verdicts", []) if v.get("exact")]
    if exact:
        return LabelledAttempt.from_attempt(attempt, task_class, not exact[0]["veto"], "exact", prompt)
    return None


def refit_acceptance(store, labels: list) -> dict:
    from fusiongraph.judging.acceptance import refit

    try:
        _, where = refit(store, labels)
    except ValueError as exc:  # too few, or one label only: the labels wait for the next run
        return {"labelled": len(labels), "fit": str(exc)}
    return {"labelled": len(labels), "fit": where}


def calibrate(path: str | Path, ctx: FusionContext, show_progress: bool = True) -> dict:
    res = get_resources(ctx)
    prompts = load_prompts(path)
    models, skipped = res.roster.availability(ctx.local_only, answering=True)
    available, _ = res.roster.availability(ctx.local_only)
    judge_id = res.roster.helper(available, ctx.judge_model, ctx.budget_usd) if ctx.llm_judge else None
    done = res.store.texts_with_source("calibrate")
    run_id = f"calibrate-{uuid.uuid4()}"
    todo = [p for p in prompts if text_hash(p) not in done]
    references = load_references(path)
    recorded = 0
    labels = []
    for prompt in tqdm(todo, desc="calibrating", unit="prompt", disable=not show_progress):
        vec = res.embedder.embed_one(prompt)
        task_class = res.taxonomy.classify(vec, res.embedder).task_class
        attempts = [
            run_attempt(
                res,
                ctx,
                prepare_call(res, ctx, m, prompt, [], judge_id, task_class=task_class),
                prompt,
                task_class,
                judge_id,
                invoke_with_retries,
            )
            for m in models
        ]
        res.store.record(prompt, vec, task_class, outcomes_from_attempts(attempts, run_id, source="calibrate"))
        recorded += len(attempts)
        labels += [r for a in attempts if (r := label(a, prompt, task_class, references.get(prompt))) is not None]
    res.store.save()
    acceptance = refit_acceptance(res.store, labels) if labels else None
    return {
        "acceptance": acceptance,
        "prompts": len(prompts),
        "already_done": len(prompts) - len(todo),
        "calibrated": len(todo),
        "outcomes": recorded,
        "models": models,
        "skipped_models": skipped,
    }
