"""The task taxonomy: known task classes, and an embedding classifier over them.

What differs by class: its candidate models (the route's pool when the taxonomy decides), its verifiers
(:mod:`fusiongraph.judging.verifiers`, applied by the rules judge) and its answer length (`max_tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusiongraph.judging.verifiers import VERIFIERS, for_class
from fusiongraph.text import load_yaml_mapping


@dataclass
class TaskClass:
    name: str
    description: str
    examples: list[str]
    candidates: list[str]
    max_tokens: int | None = None  # most output tokens of an answer in this class (None: the run's max_tokens)
    verifiers: list[str] | None = (
        None  # names in fusiongraph.judging.verifiers.VERIFIERS (None: the defaults of the name)
    )
    answer_prompt: str = "answer"  # the answering models' system prompt: prompts/<answer_prompt>.md

    def __post_init__(self) -> None:
        unknown = [v for v in self.verifiers or [] if v not in VERIFIERS]
        if unknown:
            raise ValueError(f"taxonomy class {self.name!r}: unknown verifiers {unknown}; known: {sorted(VERIFIERS)}")
        from fusiongraph.prompts import PROMPT_DIR

        if not (isinstance(self.answer_prompt, str) and (PROMPT_DIR / f"{self.answer_prompt}.md").is_file()):
            raise ValueError(
                f"taxonomy class {self.name!r}: answer_prompt {self.answer_prompt!r} is not a prompt in prompts/"
            )
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1
        ):
            raise ValueError(
                f"taxonomy class {self.name!r}: max_tokens must be a positive integer, got {self.max_tokens!r}"
            )

    @property
    def checks(self) -> list[str]:
        """The verifiers the rules judge applies to this class's answers."""
        return for_class(self.name) if self.verifiers is None else list(self.verifiers)


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
            verifiers = body.get("verifiers")
            if verifiers is not None and not (
                isinstance(verifiers, list) and all(isinstance(v, str) for v in verifiers)
            ):
                raise ValueError(f"taxonomy {path}: class {name!r}: `verifiers` must be a list of names")
            try:
                classes.append(
                    TaskClass(
                        name,
                        str(body.get("description", name)),
                        list(body.get("examples", [])),
                        list(body["candidates"]),
                        body.get("max_tokens"),
                        verifiers,
                        body.get("answer_prompt", "answer"),
                    )
                )
            except ValueError as exc:
                raise ValueError(f"taxonomy {path}: {exc}") from None
        return cls(classes)

    def unknown_models(self, known: list[str]) -> dict[str, list[str]]:
        """Per class, the candidates that are not in the roster (the route skips them with a note)."""
        known_set = set(known)
        out = {c.name: [m for m in c.candidates if m not in known_set] for c in self.classes.values()}
        return {name: models for name, models in out.items() if models}

    def check_models(self, known: list[str]) -> dict[str, list[str]]:
        """Never an error: a roster of one's own may lack the taxonomy's models. Returns what
        :meth:`unknown_models` returns; each subtask's route lists them as skipped, with the reason."""
        return self.unknown_models(known)

    def skipped_candidates(self, task_class: str, known: list[str]) -> list[dict]:
        """The skip notes of a class's candidates that are not in the roster."""
        c = self.classes.get(task_class)
        if c is None:
            return []
        known_set = set(known)
        return [
            {"model": m, "reason": f"not in the roster (a candidate of taxonomy class {c.name!r})"}
            for m in c.candidates
            if m not in known_set
        ]

    def answer_tokens(self, task_class: str | None, cap: int) -> int:
        """Most output tokens of an answer in this class, never more than the run's `cap` (its max_tokens)."""
        c = self.classes.get(task_class or "")
        return cap if c is None or c.max_tokens is None else max(1, min(c.max_tokens, cap))

    def answer_prompt(self, task_class: str | None) -> str:
        """The name of the answering models' system prompt for this class (prompts/<name>.md)."""
        c = self.classes.get(task_class or "")
        return c.answer_prompt if c is not None else "answer"

    def verifiers(self, task_class: str | None) -> list[str]:
        c = self.classes.get(task_class or "")
        return c.checks if c is not None else for_class(task_class)

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
