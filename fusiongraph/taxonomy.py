"""The task taxonomy: known task classes with candidate models, and an embedding classifier over them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusiongraph.text import load_yaml_mapping


@dataclass
class TaskClass:
    name: str
    description: str
    examples: list[str]
    candidates: list[str]


@dataclass
class Classification:
    task_class: str
    confidence: float
    scores: dict[str, float]  # class -> probability


class Taxonomy:
    """Classifies a subtask by cosine similarity of its embedding to each class's description and examples."""

    def __init__(self, classes: list[TaskClass], temperature: float = 0.05):
        if not classes:
            raise ValueError("a taxonomy needs at least one class")
        self.classes = {c.name: c for c in classes}
        self.temperature = temperature
        self._prototypes: np.ndarray | None = None
        self._embedder_name: str | None = None

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Taxonomy":
        body_by_name = load_yaml_mapping(path, "taxonomy", "classes", dict)
        classes = []
        for name, body in body_by_name.items():
            body = body or {}
            if not body.get("candidates"):
                raise ValueError(f"taxonomy {path}: class {name!r} lists no candidate models")
            classes.append(TaskClass(name, str(body.get("description", name)), list(body.get("examples", [])),
                                     list(body["candidates"])))
        return cls(classes)

    def check_models(self, known: list[str]) -> None:
        for c in self.classes.values():
            unknown = [m for m in c.candidates if m not in known]
            if unknown:
                raise ValueError(f"taxonomy class {c.name!r} names models not in the roster: {unknown}")

    def _ensure_prototypes(self, embedder) -> np.ndarray:
        if self._prototypes is None or self._embedder_name != embedder.name:
            protos = []
            for c in self.classes.values():
                vecs = embedder.embed([f"{c.name.replace('_', ' ')}: {c.description}", *c.examples])
                mean = vecs.mean(axis=0)
                protos.append(mean / (np.linalg.norm(mean) or 1.0))
            self._prototypes = np.stack(protos).astype(np.float32)
            self._embedder_name = embedder.name
        return self._prototypes

    def classify(self, embedding: np.ndarray, embedder) -> Classification:
        sims = self._ensure_prototypes(embedder) @ np.asarray(embedding, dtype=np.float32)
        z = (sims - sims.max()) / self.temperature
        probs = np.exp(z) / np.exp(z).sum()
        names = list(self.classes)
        best = int(np.argmax(probs))
        return Classification(names[best], float(probs[best]), {n: float(p) for n, p in zip(names, probs)})
