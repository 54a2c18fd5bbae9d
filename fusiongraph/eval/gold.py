"""Questions with gold answers for `fusiongraph eval`: the input lines and whether an answer is right."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fusiongraph.text import gold_reference, jsonl_objects, numbers_in, option_letter, parse_number, same_number
from fusiongraph.text import is_correct as plain_correct

GOLD_MATCHES = ("numeric", "exact", "option")  # text.MATCHES and the option letter


# ---------------------------------------------------------------------------------------------- matching


def part_correct(answer: str, reference: str, match: str, whole: bool = True) -> bool:
    """One gold part against an answer. `whole`: the answer answers only this part (numeric: its last number;
    option: the letter it settles on); else the part is one of several in the answer (numeric: any number
    equals the reference; option: the letter as "(X)" or "X." anywhere; exact: as a phrase)."""
    if match == "option":
        want = reference.strip().upper()
        if whole:
            return option_letter(answer) == want
        return bool(re.search(rf"(?:\({want}\)|\b{want}[\.\)])", answer or ""))
    if match == "numeric" and not whole:
        want = parse_number(reference)
        return any(same_number(n, want) for n in numbers_in(answer))
    return plain_correct(answer or "", reference, match)


def is_right(answer: str, item: dict) -> bool:
    """All of the question's parts are right (a one-part question: by its whole answer)."""
    parts = item["parts"]
    return all(part_correct(answer, p["reference"], p["match"], whole=len(parts) == 1) for p in parts)


# ------------------------------------------------------------------------------------------------- input


def _part(raw: Any, where: str) -> dict:
    if not isinstance(raw, dict) or "reference" not in raw:
        raise ValueError(f'{where}: a part must be an object with "reference" (and "match")')
    reference, match = gold_reference(raw["reference"], raw.get("match"), where, GOLD_MATCHES)
    return {"reference": reference.strip(), "match": match}


def load_questions(paths: list[str | Path], limit: int | None = None, skip: int = 0) -> list[dict]:
    """The questions of each JSONL file (``{"id", "prompt", "reference", "match"}`` or ``{"id", "prompt",
    "parts": [{"reference", "match"}, ...]}``), `skip` then at most `limit` of each file. A bad line raises
    ValueError naming the file and the line; ids must be unique across the files."""
    from fusiongraph.text import clean_query

    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    if skip < 0:
        raise ValueError(f"--skip must be >= 0, got {skip}")
    items: list[dict] = []
    seen: dict[str, str] = {}
    for path in paths:
        path = Path(path)
        taken = []
        for n, where, raw in jsonl_objects(path, '"id", "prompt" and "reference" or "parts"'):
            for key in ("id", "prompt"):
                if not isinstance(raw.get(key), (str, int)) or isinstance(raw.get(key), bool):
                    raise ValueError(f'{where}: missing or bad field "{key}"')
            if ("parts" in raw) == ("reference" in raw):
                raise ValueError(f'{where}: give either "reference" (one answer) or "parts" (several)')
            if "parts" in raw:
                if not isinstance(raw["parts"], list) or not raw["parts"]:
                    raise ValueError(f'{where}: "parts" must be a non-empty list')
                parts = [_part(p, f"{where}, part {i + 1}") for i, p in enumerate(raw["parts"])]
            else:
                parts = [_part(raw, where)]
            try:
                prompt = clean_query(str(raw["prompt"]))
            except ValueError as exc:
                raise ValueError(f'{where}: "prompt": {exc}') from None
            qid = str(raw["id"])
            if qid in seen:
                raise ValueError(f"{where}: id {qid!r} is also in {seen[qid]}")
            seen[qid] = where
            taken.append({"id": qid, "prompt": prompt, "parts": parts, "file": path.name, "line": n})
        taken = taken[skip:]
        items.extend(taken[:limit] if limit else taken)
    if not items:
        raise ValueError(f"no questions in {', '.join(str(p) for p in paths)} (after --skip {skip})")
    return items
