"""Acceptance: the probability that an answer is right, from its judges' verdicts.

The decision of every attempt (`run_attempt`), in this order:

1. **An exact check decides** where one applies (plain arithmetic computed by the safe evaluator, JSON or
   Python that does not parse): a veto is P(right) = 0, an exact pass P(right) = 1, whatever the soft
   judges say.
2. **Calibrated**: a logistic regression over the judges' scores (each judge as its score and whether it
   spoke), the task class, the answering model, the answer's length and whether it was cut off at
   max_tokens, fitted from labelled attempts (`fusiongraph judge-eval ... --fit`: answers marked right or
   wrong against references). It is fitted only on the attempts that no exact check or veto decided: the
   only ones it is ever asked about (an arithmetic answer the check computed says little about how the
   soft judges read a capital city; fitted on both, the held-out AUROC on the undecided ones was lower).
   A judge whose AUROC against
   correctness in a class is at chance (below 0.5 + `SAY_MARGIN` on that class's labelled rows, or on all
   rows where the class has too few) gets no say there: its features are zero, and a judge that calls a
   model (the LLM judge, the consistency samples) is not even asked there.
3. **Before the store has a fit of its own**: the fit of the labelled answers shipped with the package
   (``fusiongraph/defaults/acceptance_labels.jsonl``: the default local ladder's answers to the dev slices of the
   shared GSM8K and MMLU-Pro sets, written by ``fusiongraph eval --record``), fitted once per process; a
   store's own fit is fitted on those labels and its own (:func:`refit`). ``FUSIONGRAPH_SHIPPED_ACCEPTANCE=0``
   leaves them out.
4. **Cold start** (no labels at all): the fixed weights of the registered judges (:func:`fusiongraph.judging.base.aggregate`).

`quality_threshold` reads as "accept when P(right) reaches this". The attempt's ``acceptance`` record
shows P(right), what decided it and each judge's part in it (its contribution to the log-odds).

The fit is saved beside the store as the success probe is (``acceptance.npz``: plain arrays, atomic
rename, nothing pickled; an ``artifacts`` row for a Postgres store), and the labelled rows it was fitted
on are kept as a JSONL artifact in the store, so a later ``--fit`` refits on all of them.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from fusiongraph.defaults import ACCEPTANCE_LABELS
from fusiongraph.settings import settings

if TYPE_CHECKING:
    from fusiongraph.judging.base import Verdict
    from fusiongraph.records import AcceptanceRecord

log = logging.getLogger(__name__)

ACCEPTANCE_FILE = "acceptance.npz"
LABELS_ARTIFACT = "acceptance_labels.jsonl"
SAY_MARGIN = 0.1  # a judge needs AUROC >= 0.5 + this (in the class, else pooled) to have a say
MIN_CLASS_ROWS = 20  # labelled rows of a class (with at least MIN_CLASS_EACH right and wrong) for a per-class say
MIN_CLASS_EACH = 5
MIN_FIT_ROWS = 10
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)  # inverse L2 strengths tried, chosen by cross-validation
C_DEFAULT = 1.0  # with too few labelled attempts to cross-validate
CV_FOLDS = 4
LENGTH_SCALE = 6.0  # log1p(characters) / this: ~1 for a 400-character answer
RELOAD_S = 30.0  # a shared (Postgres) fit is re-read at most this often
SHIPPED_LABELS = ACCEPTANCE_LABELS


def _auroc(scores: list[float], labels: list[bool]) -> float | None:
    from sklearn.metrics import roc_auc_score

    right = sum(labels)
    if right == 0 or right == len(labels):
        return None
    return float(roc_auc_score(labels, scores))


@dataclass(frozen=True)
class LabelledAttempt:
    """One judged answer with its truth: what the calibrator is fitted on (plain JSON in the store)."""

    scores: dict[str, float | None]  # judge -> score (None: abstained)
    exact: bool  # an exact check decided it (its rules score is the label itself: left out of the fit)
    task_class: str
    model: str
    answer_chars: int
    truncated: bool
    correct: bool
    source: str = "judge-eval"
    prompt: str = ""  # the question (tells two labelled answers apart)
    vetoed: bool = False  # a judge vetoed it (empty, refusal, a failed check): decided, like an exact one

    @property
    def decided(self) -> bool:
        """An exact check or a veto decided it: the calibrator is never asked about such an answer."""
        return self.exact or self.vetoed

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def key(self) -> str:
        """Identifies the same labelled answer when it is added twice (a re-run fit)."""
        return json.dumps([self.prompt, self.model, self.task_class, self.answer_chars, self.source])

    @classmethod
    def from_dict(cls, d: dict) -> LabelledAttempt:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    @classmethod
    def from_attempt(
        cls, attempt: dict, task_class: str | None, correct: bool, source: str, prompt: str = ""
    ) -> LabelledAttempt:
        verdicts = attempt.get("verdicts", [])
        return cls(
            scores={v["judge"]: v["score"] for v in verdicts},
            exact=any(v.get("exact") for v in verdicts),
            vetoed=any(v.get("veto") for v in verdicts),
            task_class=task_class or "",
            model=attempt["model"],
            answer_chars=len(attempt.get("answer") or ""),
            truncated=attempt.get("finish_reason") == "length",
            correct=bool(correct),
            source=source,
            prompt=prompt,
        )


@dataclass(frozen=True)
class AcceptanceFit:
    judges: list[str]  # the judges of the features, in registry order
    classes: list[str]
    models: list[str]
    say: np.ndarray  # (len(classes) + 1, len(judges)) 0/1: row per class, the last row pooled (unknown classes)
    auroc: np.ndarray  # the same shape: the AUROC the say was decided on (nan: too few rows)
    coef: np.ndarray  # the logistic regression's coefficients over `feature_names`
    intercept: float
    rows: int  # labelled attempts fitted on
    right: int
    c: float = C_DEFAULT  # the L2 strength used (chosen by cross-validation)

    # ------------------------------------------------------------------ features
    def feature_names(self) -> list[str]:
        return [
            *[f"{j}:{part}" for j in self.judges for part in ("score", "spoke")],
            *[f"class:{c}" for c in self.classes],
            *[f"model:{m}" for m in self.models],
            "length",
            "truncated",
        ]

    def has_say(self, judge: str, task_class: str | None) -> bool:
        """Whether `judge` may speak on an answer of `task_class` (a judge unknown to the fit has none)."""
        if judge not in self.judges:
            return False
        row = self.classes.index(task_class) if task_class in self.classes else len(self.classes)
        return bool(self.say[row, self.judges.index(judge)])

    def features(
        self,
        scores: dict[str, float | None],
        task_class: str | None,
        model: str,
        answer_chars: int,
        truncated: bool,
        exact: bool = False,
    ) -> np.ndarray:
        x = np.zeros(len(self.coef))
        for i, j in enumerate(self.judges):
            s = scores.get(j)
            if s is None or not self.has_say(j, task_class) or (exact and j == "rules"):
                continue
            x[2 * i], x[2 * i + 1] = float(s) - 0.5, 1.0
        base = 2 * len(self.judges)
        if task_class in self.classes:
            x[base + self.classes.index(task_class)] = 1.0
        base += len(self.classes)
        if model in self.models:
            x[base + self.models.index(model)] = 1.0
        x[-2] = math.log1p(max(answer_chars, 0)) / LENGTH_SCALE
        x[-1] = 1.0 if truncated else 0.0
        return x

    def predict(self, x: np.ndarray) -> tuple[float, dict[str, float]]:
        """(P(right), each judge's part: its contribution to the log-odds)."""
        z = float(x @ self.coef + self.intercept)
        parts = {j: float(x[2 * i : 2 * i + 2] @ self.coef[2 * i : 2 * i + 2]) for i, j in enumerate(self.judges)}
        return 1.0 / (1.0 + math.exp(-z)), parts

    def predict_row(self, row: LabelledAttempt) -> float:
        x = self.features(row.scores, row.task_class, row.model, row.answer_chars, row.truncated, row.exact)
        return self.predict(x)[0]

    # ------------------------------------------------------------------ saving
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(
            buf,
            judges=np.array(self.judges, dtype=str),
            classes=np.array(self.classes, dtype=str),
            models=np.array(self.models, dtype=str),
            say=self.say.astype(np.int8),
            auroc=self.auroc.astype(np.float64),
            coef=self.coef.astype(np.float64),
            intercept=np.array(self.intercept),
            rows=np.array(self.rows),
            right=np.array(self.right),
            c=np.array(self.c),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> AcceptanceFit:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            fit = cls(
                [str(j) for j in z["judges"]],
                [str(c) for c in z["classes"]],
                [str(m) for m in z["models"]],
                z["say"].astype(bool),
                z["auroc"].astype(np.float64),
                z["coef"].astype(np.float64),
                float(z["intercept"]),
                int(z["rows"]),
                int(z["right"]),
                float(z["c"]),
            )
        if len(fit.coef) != len(fit.feature_names()) or fit.say.shape != (len(fit.classes) + 1, len(fit.judges)):
            raise ValueError("acceptance fit: the arrays do not match its judges, classes and models")
        return fit

    def summary(self) -> dict:
        """What the fit says, for the CLI and the README: per judge its say by class and its weight."""
        names = self.feature_names()
        return {
            "rows": self.rows,
            "right": self.right,
            "c": self.c,
            "judges": {
                j: {
                    "weight": round(float(self.coef[2 * i]), 3),
                    "spoke": round(float(self.coef[2 * i + 1]), 3),
                    "say": {c: bool(self.say[k, i]) for k, c in enumerate([*self.classes, "*"])},
                    "auroc": {
                        c: None if math.isnan(self.auroc[k, i]) else round(float(self.auroc[k, i]), 3)
                        for k, c in enumerate([*self.classes, "*"])
                    },
                }
                for i, j in enumerate(self.judges)
            },
            "coef": {n: round(float(w), 3) for n, w in zip(names, self.coef)},
            "intercept": round(self.intercept, 3),
        }


# ---------------------------------------------------------------------------------------------- fitting


def _say(rows: list[LabelledAttempt], judges: list[str], classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per class (and pooled, the last row) and judge: the judge's AUROC on the rows it spoke on, and
    whether that is above chance by SAY_MARGIN. A class with too few rows takes the pooled say."""
    say = np.zeros((len(classes) + 1, len(judges)), dtype=bool)
    auroc = np.full(say.shape, np.nan)
    for i, j in enumerate(judges):

        def spoke(subset):
            pairs = [(r.scores[j], r.correct) for r in subset if r.scores.get(j) is not None]
            if j == "rules":  # on exactly decided rows the rules' score is the label itself
                pairs = [(r.scores[j], r.correct) for r in subset if r.scores.get(j) is not None and not r.exact]
            return pairs

        pooled = spoke(rows)
        a = _auroc([s for s, _ in pooled], [c for _, c in pooled]) if pooled else None
        auroc[-1, i] = np.nan if a is None else a
        say[-1, i] = a is not None and a >= 0.5 + SAY_MARGIN
        for k, c in enumerate(classes):
            pairs = spoke([r for r in rows if r.task_class == c])
            right = sum(ok for _, ok in pairs)
            if len(pairs) >= MIN_CLASS_ROWS and min(right, len(pairs) - right) >= MIN_CLASS_EACH:
                a = _auroc([s for s, _ in pairs], [ok for _, ok in pairs])
                auroc[k, i] = np.nan if a is None else a
                say[k, i] = a is not None and a >= 0.5 + SAY_MARGIN
            else:
                say[k, i] = say[-1, i]
    return say, auroc


def fit_acceptance(rows: Iterable[LabelledAttempt], judge_order: Iterable[str] | None = None) -> AcceptanceFit:
    """Fit the calibrator on the labelled attempts that no exact check or veto decided (both right and
    wrong ones needed); the decided ones are kept in the store but not fitted on."""
    from sklearn.linear_model import LogisticRegression

    every = list(rows)
    rows = [r for r in every if not r.decided]
    right = sum(r.correct for r in rows)
    if len(rows) < MIN_FIT_ROWS or right == 0 or right == len(rows):
        raise ValueError(
            f"the calibrator needs at least {MIN_FIT_ROWS} labelled attempts that no exact check or veto "
            f"decided, right and wrong ones: got {len(rows)} ({len(every) - len(rows)} more decided), {right} right"
        )
    seen = {j for r in rows for j, s in r.scores.items() if s is not None}
    order = list(judge_order) if judge_order is not None else sorted(seen)
    judges = [j for j in order if j in seen]
    classes = sorted({r.task_class for r in rows if r.task_class})
    models = sorted({r.model for r in rows})
    say, auroc = _say(rows, judges, classes)
    n_features = 2 * len(judges) + len(classes) + len(models) + 2
    fit = AcceptanceFit(judges, classes, models, say, auroc, np.zeros(n_features), 0.0, len(rows), right)
    x = np.array([fit.features(r.scores, r.task_class, r.model, r.answer_chars, r.truncated, r.exact) for r in rows])
    y = np.array([r.correct for r in rows], dtype=int)
    c = choose_c(x, y)
    model = LogisticRegression(C=c, max_iter=2000).fit(x, y)
    return AcceptanceFit(
        judges,
        classes,
        models,
        say,
        auroc,
        model.coef_[0].astype(np.float64),
        float(model.intercept_[0]),
        len(rows),
        right,
        c,
    )


def choose_c(x: np.ndarray, y: np.ndarray) -> float:
    """The L2 strength with the best cross-validated log-loss on the labelled attempts themselves
    (scikit-learn's LogisticRegressionCV over C_GRID, stratified CV_FOLDS folds); C_DEFAULT when a label has
    fewer than 2 x CV_FOLDS rows."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    if min(int(y.sum()), int(len(y) - y.sum())) < 2 * CV_FOLDS:
        return C_DEFAULT
    folds = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=0)
    search = LogisticRegressionCV(
        Cs=list(C_GRID), cv=folds, scoring="neg_log_loss", max_iter=2000, l1_ratios=(0.0,), use_legacy_attributes=False
    ).fit(x, y)
    return float(np.ravel(search.C_)[0])


# ------------------------------------------------------------------------------------- the decision


def decide(
    fit: AcceptanceFit | None,
    verdicts: list[Verdict],
    task_class: str | None,
    model: str,
    answer: str,
    finish_reason: str | None,
) -> AcceptanceRecord:
    """P(right) of one judged answer and what decided it (see the module docstring)."""
    from fusiongraph.judging.base import aggregate, judge_weights

    exact = next((v for v in verdicts if v.exact or v.veto), None)
    if exact is not None:
        p = 0.0 if any(v.veto for v in verdicts) else 1.0
        return {"p_right": p, "by": "exact" if exact.exact else "veto", "parts": {exact.judge: p}, "no_say": []}
    if fit is None:
        weights = judge_weights()
        spoken = [v for v in verdicts if v.score is not None]
        total = sum(weights.get(v.judge, 0.0) for v in spoken)
        parts = {v.judge: round(weights.get(v.judge, 0.0) * v.score / total, 4) if total else 0.0 for v in spoken}
        return {"p_right": round(aggregate(verdicts), 4), "by": "prior", "parts": parts, "no_say": []}
    scores = {v.judge: v.score for v in verdicts}
    x = fit.features(scores, task_class, model, len(answer or ""), finish_reason == "length")
    p, parts = fit.predict(x)
    no_say = [v.judge for v in verdicts if v.score is not None and not fit.has_say(v.judge, task_class)]
    return {
        "p_right": round(p, 4),
        "by": "calibrated",
        "parts": {j: round(w, 4) for j, w in parts.items() if scores.get(j) is not None and j not in no_say},
        "no_say": no_say,
    }


def without_say(fit: AcceptanceFit | None, task_class: str | None) -> frozenset[str]:
    """The judges that have no say on answers of `task_class`: a model-calling one is not asked there.
    Cold start: the judges whose prior weight is 0 (the consistency judge)."""
    from fusiongraph.judging.base import JUDGES

    if fit is None:
        return frozenset(name for name, j in JUDGES.items() if not j.weight)
    return frozenset(name for name in JUDGES if not fit.has_say(name, task_class))


# ---------------------------------------------------------------------------- saving beside the store


def _shared(store) -> bool:
    return bool(getattr(store, "shares_artifacts", False))


def save_bytes(store, name: str, data: bytes) -> str:
    """As the store's artifact when workers share it (Postgres), else beside the directory store (a temp
    file and an atomic rename); returns where."""
    directory = getattr(store, "directory", None)
    if _shared(store) or directory is None:
        store.put_artifact(name, data)
        return f"artifact {name}"
    path = Path(directory) / name
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return str(path)


def load_bytes(store, name: str) -> bytes | None:
    directory = getattr(store, "directory", None)
    if _shared(store) or directory is None:
        return store.get_artifact(name)
    path = Path(directory) / name
    return path.read_bytes() if path.exists() else None


_cache: dict[int, tuple[float, object, AcceptanceFit | None]] = {}
_cache_lock = threading.Lock()


def current_fit(store) -> AcceptanceFit | None:
    """The saved fit of this store (None: cold start). Re-read when its file changes (a shared one at most
    every RELOAD_S); an unreadable fit is ignored with a warning."""
    directory = getattr(store, "directory", None)
    by_file = not _shared(store) and directory is not None
    stamp: object = None
    if by_file:
        try:
            stamp = (Path(directory) / ACCEPTANCE_FILE).stat().st_mtime_ns
        except OSError:
            return shipped_fit()
    with _cache_lock:
        cached = _cache.get(id(store))
    if cached is not None and (stamp == cached[1] if by_file else time.time() - cached[0] < RELOAD_S):
        return cached[2]
    try:
        data = load_bytes(store, ACCEPTANCE_FILE)
        fit = AcceptanceFit.from_bytes(data) if data else None
    except Exception as exc:
        log.warning("acceptance fit unreadable (%s); using the shipped fit or the fixed judge weights", exc)
        fit = None
    with _cache_lock:
        _cache[id(store)] = (time.time(), stamp, fit)
    return fit if fit is not None else shipped_fit()


def shipped_labels() -> list[LabelledAttempt]:
    """The labelled answers shipped with the package (none with FUSIONGRAPH_SHIPPED_ACCEPTANCE=0)."""
    if not settings().shipped_acceptance or not SHIPPED_LABELS.is_file():
        return []
    return [
        LabelledAttempt.from_dict(json.loads(line))
        for line in SHIPPED_LABELS.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


_shipped: dict[tuple, AcceptanceFit | None] = {}


def shipped_fit() -> AcceptanceFit | None:
    """The fit of the shipped labels (fitted once per process and judge registry), else None."""
    from fusiongraph.judging.base import JUDGES

    labels = shipped_labels()
    if not labels:
        return None
    key = (len(labels), tuple(JUDGES))
    with _cache_lock:
        if key in _shipped:
            return _shipped[key]
    try:
        fit = fit_acceptance(labels, JUDGES)
    except ValueError as exc:
        log.warning("the shipped acceptance labels cannot be fitted (%s); using the fixed judge weights", exc)
        fit = None
    with _cache_lock:
        _shipped[key] = fit
    return fit


def save_fit(store, fit: AcceptanceFit) -> str:
    where = save_bytes(store, ACCEPTANCE_FILE, fit.to_bytes())
    with _cache_lock:
        _cache.pop(id(store), None)
    return where


def load_labels(store) -> list[LabelledAttempt]:
    data = store.get_artifact(LABELS_ARTIFACT)
    if not data:
        return []
    return [LabelledAttempt.from_dict(json.loads(line)) for line in data.decode("utf-8").splitlines() if line.strip()]


def add_labels(store, rows: list[LabelledAttempt]) -> list[LabelledAttempt]:
    """Keep labelled attempts in the store (with the earlier ones); returns all of them."""
    every, seen = [], set()
    for r in [*load_labels(store), *rows]:
        if r.key() not in seen:
            seen.add(r.key())
            every.append(r)
    store.put_artifact(LABELS_ARTIFACT, "".join(json.dumps(r.as_dict()) + "\n" for r in every).encode("utf-8"))
    return every


def refit(store, new_rows: list[LabelledAttempt]) -> tuple[AcceptanceFit, str]:
    """Keep `new_rows` with the store's earlier labelled attempts, fit on all of them and the shipped ones and
    save the fit beside the store; returns (the fit, where it was saved). ValueError when they cannot be
    fitted yet."""
    from fusiongraph.judging.base import JUDGES

    fit = fit_acceptance(shipped_labels() + add_labels(store, new_rows), JUDGES)
    return fit, save_fit(store, fit)
