"""Text hygiene shared by the nodes: query validation, trimming to a model's context, redaction."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from pathlib import Path

import yaml

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_QUERY_CHARS = 2_000_000

# answer patterns shared by the judges, the verifiers and judge-eval
# a number not glued to a preceding word, digit or dot: "-5", "1,234", "84.0"; "7-8" reads 7 and 8
NUMBER = re.compile(r"(?:(?<![\w.])-)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)")
# "B) ...", "(c) ...", "J. ...": a task's options (MMLU-Pro has ten, A-J)
OPTION_LABEL = re.compile(r"(?:^|\s)\(?([A-Ja-j])[).:]\s+\S", re.MULTILINE)
OPTION_LETTERS = "ABCDEFGHIJ"
# the letter an answer settles on, most explicit first: "\boxed{C}", "the answer is (C)" / "Answer: C" / "option C is correct",
# "option C", a line that starts "C." or "(C)", any "(C)"; within a kind the last one (after reasoning)
_OPTION_PATTERNS = (
    re.compile(r"\\boxed\{\s*(?:\\text\{\s*)?\(?([A-J])\b"),  # LaTeX: \boxed{B}, \boxed{\text{(B)}}
    re.compile(r"(?i:answer|option|choice)\s*(?:(?i:is|would be)|:)\s*(?i:option\s*)?[\*\(\[\s]*([A-J])\b"),
    re.compile(r"(?i:option|choice)\s*[\(\[]?([A-J])\b"),
    re.compile(r"^\s*[\*\(\[]*([A-J])[\)\]\.:\*]", re.MULTILINE),
    re.compile(r"\(([A-J])\)"),
)
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n")


def option_letter_span(text: str) -> tuple[str, tuple[int, int]] | None:
    """The option letter an answer settles on and where it is written (see _OPTION_PATTERNS), else None; a
    bare one-letter answer counts."""
    text = text or ""
    bare = text.strip().strip("*().[]:").strip()
    if len(bare) == 1 and bare.upper() in OPTION_LETTERS:
        at = text.upper().index(bare.upper())
        return bare.upper(), (at, at + 1)
    for pattern in _OPTION_PATTERNS:
        found = list(pattern.finditer(text))
        if found:
            return found[-1].group(1).upper(), found[-1].span(1)
    return None


def option_letter(text: str) -> str | None:
    found = option_letter_span(text)
    return found[0] if found else None


def jsonl_objects(path, expected: str):
    """(where, object) for each non-blank line of a JSONL file; a line that is not a JSON object raises
    ValueError naming the file and the line (`expected`: what an object must hold, for the message)."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}, line {n}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(item, dict):
                raise ValueError(f"{where}: expected an object with {expected}")
            yield n, where, item


class QueryError(ValueError):
    """The query cannot be answered as given."""


def clean_query(query: object) -> str:
    """A usable query or a clear error: strings only, no lone surrogates or control characters, not blank."""
    if isinstance(query, bytes):
        query = query.decode("utf-8", errors="replace")
    if not isinstance(query, str):
        raise QueryError(f"query must be a string, got {type(query).__name__}")
    query = _SURROGATE.sub("\ufffd", query)  # lone surrogates (undecodable bytes) cannot be sent anywhere
    query = _CONTROL.sub(" ", unicodedata.normalize("NFC", query)).strip()
    if not query:
        raise QueryError("query is empty: give the question or task to answer")
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(f"query is {len(query):,} characters; the limit is {MAX_QUERY_CHARS:,}")
    return query


def estimate_tokens(text: str) -> int:
    """A typical token count when no tokenizer is at hand (for predictions and unreported usage): English
    averages ~4 characters a token (3 are counted), a CJK character or an emoji is about one token or more.
    An estimate, not a bound: the budget's reservations use `fusiongraph.budget.token_bound`."""
    if text.isascii():
        return len(text) // 3 + 1
    wide = sum(1 for c in text if ord(c) > 0x7F)
    return (len(text) - wide) // 3 + wide + 1


def trim_to_tokens(text: str, max_tokens: int, count=estimate_tokens) -> tuple[str, int]:
    """Keep the head and the tail of a text that is too long; returns (text, characters removed)."""
    if max_tokens <= 0:
        return "", len(text)
    if count(text) <= max_tokens:
        return text, 0
    keep = max(int(len(text) * max_tokens / max(count(text), 1)) - 40, 16)
    while True:
        head, tail = text[: keep * 2 // 3], text[len(text) - keep // 3 :]
        removed = len(text) - len(head) - len(tail)
        trimmed = f"{head}\n[... {removed} characters trimmed ...]\n{tail}"
        if count(trimmed) <= max_tokens or keep <= 16:
            return trimmed, removed
        keep = int(keep * 0.8)


class TooLong(Exception):
    """A text does not fit the model's context: the caller does without the call rather than cut it."""


def fit_to_tokens(text: str, max_tokens: int, count=estimate_tokens) -> tuple[str, int]:
    """Like `trim_to_tokens`, but the result is guaranteed to count at most `max_tokens` (a hard cut of the
    head if the head-and-tail form still does not fit, else the empty string)."""
    if count(text) <= max_tokens:
        return text, 0
    trimmed, removed = trim_to_tokens(text, max_tokens, count)
    if count(trimmed) <= max_tokens:
        return trimmed, removed
    lo, hi = 0, len(text)  # the longest head that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    head = text[:lo] if lo and count(text[:lo]) <= max_tokens else ""
    return head, len(text) - len(head)


def redact(text: str, secrets: list[str]) -> str:
    """Remove secret values (API keys) and anything shaped like a bearer key from text that is shown or stored."""
    for s in secrets:
        text = text.replace(s, "***")
    return re.sub(r"\b(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9._\-]{8,})", "***", text)


_WORD = re.compile(r"[^\W_]{3,}|\d+", re.UNICODE)
_STOP = frozenset(
    "the and for are was were with what which who whom whose this that these those from into "
    "about also then than have has had not but all any can could would should will shall how why "
    "when where does did its it's you your they them their there here give tell please".split()
)


def content_words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP}


def grounding(subtask: str, query: str) -> float:
    """Share of a subtask's content words found in the query: a decomposer that invents tasks scores low."""
    words = content_words(subtask)
    if not words:
        return 0.0
    query_words = content_words(query)
    return sum(1 for w in words if w in query_words or any(q.startswith(w[:5]) for q in query_words)) / len(words)


def load_yaml_mapping(path: str | Path, what: str, key: str, kind: type) -> object:
    """`data[key]` of a YAML config file, or an error naming the file and what is wrong with it."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{what} {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get(key), kind):
        raise ValueError(f"{what} {path} must have a top-level `{key}:` {'list' if kind is list else 'mapping'}")
    return data[key]


# ---------------------------------------------------------------------------------------------- matching

MATCHES = ("exact", "numeric")
REL_TOL = 1e-6

_FULL_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_NOT_WORD = re.compile(r"[\W_]+")


def parse_number(text: str) -> float | None:
    """The whole text as a number ("84", "-3.5", "1,234"), else None."""
    text = (text or "").strip()
    if not _FULL_NUMBER.fullmatch(text):
        return None
    return float(text.replace(",", ""))


def numbers_in(text: str) -> list[float]:
    """Every number written in digits in the text, in order."""
    return [float(n.replace(",", "")) for n in NUMBER.findall(text or "")]


def last_number(answer: str) -> float | None:
    """The last number written in digits in the answer, else None."""
    found = numbers_in(answer)
    return found[-1] if found else None


def same_number(got: float, want: float) -> bool:
    """Two numbers equal for grading (relative tolerance REL_TOL)."""
    return math.isclose(got, want, rel_tol=REL_TOL, abs_tol=1e-12)


def normalise(text: str) -> str:
    return _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text or "").lower()).strip()


def default_match(reference: str) -> str:
    return "numeric" if parse_number(reference) is not None else "exact"


def gold_reference(reference, match, where: str, matches: tuple[str, ...] = MATCHES) -> tuple[str, str]:
    """A question file's gold `reference` (a string or a number) and its `match` (default: numeric for a
    number, else exact), checked: ValueError naming `where` when either is unusable."""
    if isinstance(reference, (int, float)) and not isinstance(reference, bool):
        reference = str(reference)
    if not isinstance(reference, str) or not normalise(reference):
        raise ValueError(f'{where}: "reference" must be a non-empty string or a number')
    match = match or default_match(reference)
    if match not in matches:
        raise ValueError(f'{where}: "match" must be one of {list(matches)}, got {match!r}')
    if match == "numeric" and parse_number(reference) is None:
        raise ValueError(f'{where}: "match" is numeric but the reference {reference!r} is not a number')
    if match == "option" and (len(reference.strip()) != 1 or reference.strip().upper() not in OPTION_LETTERS):
        raise ValueError(f'{where}: "match" is option but the reference {reference!r} is not one option letter')
    return reference, match


def is_correct(answer: str, reference: str, match: str | None = None) -> bool:
    """Whether the answer gives the reference: ``numeric``, the last number in the answer equals the reference
    (relative tolerance 1e-6); ``exact``, the normalised reference is the whole normalised answer or a run of
    its words."""
    match = match or default_match(reference)
    if match == "numeric":
        want, got = parse_number(reference), last_number(answer)
        if want is None:
            raise ValueError(f"numeric match needs a numeric reference, got {reference!r}")
        return got is not None and same_number(got, want)
    if match == "exact":
        ref, ans = normalise(reference), normalise(answer)
        return bool(ref) and (ans == ref or f" {ref} " in f" {ans} ")
    raise ValueError(f"unknown match {match!r}; use one of {MATCHES}")
