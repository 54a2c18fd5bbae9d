"""The success probe: per-model logistic regression on a subtask's embedding and task class.

Neighbours see only the few most similar past subtasks; the probe reads every recorded outcome of a
model at once and learns which directions of the embedding space (and which task classes) it fails
in (EMAFusion's learned router, RouteLLM's classifier routers). The router uses it as part of the
prior that the neighbours then correct (see :mod:`fusiongraph.routing.router`).

It is fitted from the outcome store itself, so there is no training step to run: it is fitted when
first needed, and refitted once the store has grown by `refit_growth` (in a background thread for a
live graph, in line for the replay benchmark). Between fits, new outcomes act at once through the
neighbours. A fit is saved beside an on-disk store (`probe.npz`, plain arrays: nothing is pickled), so
the next process (a CLI run, another server worker) starts from it instead of refitting; it is only a
cache of what the store says, and an unreadable one is ignored.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PROBE_FILE = "probe.npz"


CLUSTER_TEMPERATURE = 0.03  # soft assignment: softmax of cosine similarity to the centroids / this
CLUSTER_PRIOR = 20.0  # pseudo-count pulling a cluster's success rate toward the model's rate on the fitted rows


@dataclass(frozen=True)
class ProbeFit:
    classes: dict[str, int]  # task class -> feature column after the embedding
    weights: dict[str, tuple[np.ndarray, float]]  # model -> (coefficients, intercept)
    outcomes: int  # store.outcomes_folded when fitted
    centroids: np.ndarray | None = None  # (K, dim) unit k-means centroids of the fitted subtasks
    cluster_rates: dict[str, np.ndarray] | None = None  # model -> (K,) shrunk success rate per cluster

    def cluster_rate(self, embedding, models: list[str]) -> dict[str, float]:
        """Each model's success rate in the subtask's cluster (soft assignment), Avengers-Pro style."""
        if self.centroids is None or not self.cluster_rates or embedding is None:
            return {}
        vec = np.asarray(embedding, dtype=np.float64).reshape(-1)
        if vec.shape[0] != self.centroids.shape[1]:
            return {}
        sim = self.centroids @ vec
        a = np.exp((sim - sim.max()) / CLUSTER_TEMPERATURE)
        a /= a.sum()
        return {m: float(a @ self.cluster_rates[m]) for m in models if m in self.cluster_rates}

    def to_bytes(self) -> bytes:
        """Plain arrays in an .npz (nothing pickled)."""
        models = sorted(self.weights)
        dim = len(next(iter(self.weights.values()))[0]) if models else 0
        clustered = sorted(self.cluster_rates or {})
        k = 0 if self.centroids is None else len(self.centroids)
        buf = io.BytesIO()
        np.savez(
            buf,
            classes=np.array(sorted(self.classes, key=self.classes.get), dtype=str),
            models=np.array(models, dtype=str),
            outcomes=np.array(self.outcomes),
            coef=np.array([self.weights[m][0] for m in models]).reshape(len(models), dim),
            intercept=np.array([self.weights[m][1] for m in models]),
            centroids=self.centroids if self.centroids is not None else np.zeros((0, 0)),
            cluster_models=np.array(clustered, dtype=str),
            cluster_rates=np.array([self.cluster_rates[m] for m in clustered]).reshape(len(clustered), k),
        )
        return buf.getvalue()

    def save(self, path: Path) -> None:
        """Via a temp file and an atomic rename."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp.npz")
        tmp.write_bytes(self.to_bytes())
        os.replace(tmp, path)

    @classmethod
    def from_bytes(cls, data: bytes) -> ProbeFit:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            classes = {str(c): i for i, c in enumerate(z["classes"])}
            weights = {
                str(m): (z["coef"][i].astype(np.float64), float(z["intercept"][i])) for i, m in enumerate(z["models"])
            }
            centroids, rates = None, None
            if "centroids" in z.files and z["centroids"].size:
                centroids = z["centroids"].astype(np.float64)
                rates = {str(m): z["cluster_rates"][i].astype(np.float64) for i, m in enumerate(z["cluster_models"])}
            return cls(classes, weights, int(z["outcomes"]), centroids, rates)

    @classmethod
    def load(cls, path: Path) -> ProbeFit:
        return cls.from_bytes(Path(path).read_bytes())


class SuccessProbe:
    """Predicts P(success) per model from [embedding, one-hot task class]; fitted from the store."""

    def __init__(
        self,
        store,
        c: float = 0.3,
        min_outcomes: int = 100,
        max_subtasks: int = 20_000,
        refit_growth: float = 0.1,
        background: bool = True,
        max_clusters: int = 64,
    ):
        self.store = store
        self.c = c  # inverse L2 strength; 0.3 replayed best on MMLU (0.1-1 within 0.005 APGR)
        self.min_outcomes = min_outcomes
        self.max_subtasks = max_subtasks
        self.refit_growth = refit_growth
        self.background = background
        self.max_clusters = max_clusters  # 0 turns the cluster rates off
        self._lock = threading.Lock()
        self._fitting = False
        directory = getattr(store, "directory", None)
        self.path = Path(directory) / PROBE_FILE if directory is not None else None
        self._fit: ProbeFit | None = self._load()

    def _shared(self) -> bool:
        """No store directory, but a store that shares artifacts between workers (Postgres): the fit lives there."""
        return self.path is None and getattr(self.store, "shares_artifacts", False)

    def _load(self) -> ProbeFit | None:
        try:
            if self._shared():
                data = self.store.get_artifact(PROBE_FILE)
                return ProbeFit.from_bytes(data) if data else None
            if self.path is None or not self.path.exists():
                return None
            return ProbeFit.load(self.path)
        except Exception as exc:  # only a cache: refit from the store
            log.warning("success probe fit unreadable (%s); it will be refitted from the store", exc)
            return None

    # ------------------------------------------------------------------ fitting
    def fit(self) -> ProbeFit:
        """Fit every model with enough outcomes (both successes and failures) on the newest subtasks."""
        seen = self.store.outcomes_folded
        vectors, classes, per_model = self.store.training_rows(self.max_subtasks)
        fit = self.fit_rows(vectors, classes, per_model, seen)
        self._fit = fit
        try:
            if self._shared():
                self.store.put_artifact(PROBE_FILE, fit.to_bytes())
            elif self.path is not None:
                fit.save(self.path)
        except Exception as exc:  # a read-only store still routes; the next process refits
            log.warning("could not save the success probe (%s): %s", self.path or "store artifact", exc)
        return fit

    def fit_rows(self, vectors: np.ndarray, classes: list, per_model: dict, seen: int) -> ProbeFit:
        """A fit on these rows (``store.training_rows``' shape), neither kept nor saved: :meth:`fit`'s work, and
        the cross-fitted probes of :func:`fusiongraph.routing.operating_point.replay_store`."""
        from sklearn.linear_model import LogisticRegression

        names = sorted({c for c in classes if c})
        cols = {c: i for i, c in enumerate(names)}
        onehot = np.zeros((len(classes), len(names)), np.float32)
        for i, c in enumerate(classes):
            if c:
                onehot[i, cols[c]] = 1.0
        features = np.hstack([vectors, onehot])
        weights = {}
        for model, (rows, success) in per_model.items():
            if len(rows) < self.min_outcomes or success.max() <= 0.0 or success.min() >= 1.0:
                continue
            # graded outcomes (a judge's 0.7) as soft labels: a success row weighted s, a failure row 1 - s
            x = np.vstack([features[rows], features[rows]])
            y = np.concatenate([np.ones(len(rows)), np.zeros(len(rows))])
            w = np.concatenate([success, 1.0 - success])
            keep = w > 0
            model_fit = LogisticRegression(C=self.c, max_iter=1000).fit(x[keep], y[keep], sample_weight=w[keep])
            weights[model] = (model_fit.coef_[0].astype(np.float64), float(model_fit.intercept_[0]))
        centroids, cluster_rates = self._clusters(vectors, per_model)
        return ProbeFit(cols, weights, seen, centroids, cluster_rates)

    def frozen(self, fit: ProbeFit | None) -> SuccessProbe:
        """A probe that answers with `fit` and never refits (a cross-fitted one for a replay)."""
        probe = SuccessProbe.__new__(SuccessProbe)
        probe.__dict__.update(self.__dict__)
        probe._lock, probe._fitting, probe.path, probe._fit = threading.Lock(), False, None, fit
        probe.current = lambda: fit  # type: ignore[method-assign]
        return probe

    def _clusters(self, vectors: np.ndarray, per_model) -> tuple[np.ndarray | None, dict[str, np.ndarray] | None]:
        """k-means clusters of the fitted subtasks (K = rows / 150, at most 64) and each model's rate in each.

        Avengers-Pro's router: the task classes are few and fixed, the clusters follow what the store holds
        (on MMLU-Pro they recover much of what the gold categories say about the models).
        """
        from sklearn.cluster import MiniBatchKMeans

        k = min(self.max_clusters, len(vectors) // 150)
        if k < 4:
            return None, None
        km = MiniBatchKMeans(k, random_state=0, n_init=3, batch_size=2048).fit(vectors)
        centroids = km.cluster_centers_ / np.maximum(np.linalg.norm(km.cluster_centers_, axis=1, keepdims=True), 1e-12)
        rates = {}
        for model, (rows, success) in per_model.items():
            if len(rows) < self.min_outcomes:
                continue
            labels = km.labels_[rows]
            total = np.bincount(labels, weights=success, minlength=k)
            count = np.bincount(labels, minlength=k)
            g = float(success.mean())
            rates[model] = (total + CLUSTER_PRIOR * g) / (count + CLUSTER_PRIOR)
        return centroids, rates

    def _refit_in_background(self) -> None:
        try:
            self.fit()
        except Exception:  # a failed refit keeps the last good fit; routing goes on without it
            log.exception("success probe refit failed")
        finally:
            with self._lock:
                self._fitting = False

    def current(self) -> ProbeFit | None:
        """The latest fit, refitting first (or in the background) when the store has grown enough."""
        fit = self._fit
        seen = self.store.outcomes_folded
        stale = fit is None or seen >= max(fit.outcomes * (1 + self.refit_growth), fit.outcomes + 1)
        if not stale or seen < self.min_outcomes:
            return fit
        if not self.background:
            return self.fit()
        with self._lock:
            if self._fitting:
                return fit
            self._fitting = True
        threading.Thread(target=self._refit_in_background, name="success-probe-fit", daemon=True).start()
        return fit

    # ------------------------------------------------------------------ predicting
    def cluster_rate(self, embedding, models: list[str]) -> dict[str, float]:
        fit = self.current()
        return fit.cluster_rate(embedding, models) if fit is not None else {}

    def predict(self, embedding, class_scores: dict[str, float], models: list[str]) -> dict[str, float]:
        """P(success) of each fitted model among `models`; models without a fit are left out."""
        fit = self.current()
        if fit is None or embedding is None:
            return {}
        vec = np.asarray(embedding, dtype=np.float64).reshape(-1)
        onehot = np.zeros(len(fit.classes))
        for cls, p in class_scores.items():
            if cls in fit.classes:
                onehot[fit.classes[cls]] = p
        x = np.concatenate([vec, onehot])
        out = {}
        for m in models:
            if m in fit.weights and len(fit.weights[m][0]) == len(x):
                coef, intercept = fit.weights[m]
                out[m] = float(1.0 / (1.0 + np.exp(-(x @ coef + intercept))))
        return out
