"""Calibration (EMAFusion's synthesized training data): every seed prompt through every configured model.

Each answer is judged like a cascade attempt and recorded in the outcome store with source
"calibrate", one transaction per prompt, so an interrupted run resumes at the first prompt it had not
finished.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tqdm import tqdm

from fusiongraph.attempt import invoke_with_retries, outcomes_from_attempts, prepare_call, run_attempt
from fusiongraph.context import FusionContext
from fusiongraph.resources import get_resources
from fusiongraph.store.outcomes import text_hash
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


def calibrate(path: str | Path, ctx: FusionContext, show_progress: bool = True) -> dict:
    res = get_resources(ctx)
    prompts = load_prompts(path)
    models, skipped = res.roster.availability(ctx.local_only, answering=True)
    available, _ = res.roster.availability(ctx.local_only)
    judge_id = res.roster.helper(available, ctx.judge_model) if ctx.llm_judge else None
    done = res.store.texts_with_source("calibrate")
    run_id = f"calibrate-{uuid.uuid4()}"
    todo = [p for p in prompts if text_hash(p) not in done]
    recorded = 0
    for prompt in tqdm(todo, desc="calibrating", unit="prompt", disable=not show_progress):
        vec = res.embedder.embed_one(prompt)
        task_class = res.taxonomy.classify(vec, res.embedder).task_class
        attempts = [
            run_attempt(
                res,
                ctx,
                prepare_call(res, ctx, m, prompt, [], judge_id),
                prompt,
                task_class,
                judge_id,
                invoke_with_retries,
            )
            for m in models
        ]
        res.store.record(prompt, vec, task_class, outcomes_from_attempts(attempts, run_id, source="calibrate"))
        recorded += len(attempts)
    res.store.save()
    return {
        "prompts": len(prompts),
        "already_done": len(prompts) - len(todo),
        "calibrated": len(todo),
        "outcomes": recorded,
        "models": models,
        "skipped_models": skipped,
    }
