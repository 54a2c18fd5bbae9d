"""Runtime knobs of the fusion graph: one dataclass, shown with its descriptions in LangGraph Studio."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(kw_only=True)
class FusionContext:
    """Per-run configuration, passed as ``graph.invoke(..., context=FusionContext(...))`` or a dict."""

    quality_threshold: float = field(
        default=0.6,
        metadata={
            "description": "Accept an answer when its probability of being right (0-1: an exact check, else the "
            "judges' calibrated acceptance, fusiongraph/acceptance.py) reaches this; else escalate."
        },
    )
    budget_usd: float = field(
        default=0.05,
        metadata={
            "description": "Most USD one query may spend on every call (plan, answers, judges, synthesis): each call "
            "reserves its worst case first; the subtasks share what the plan left (fusiongraph/budget.py)."
        },
    )
    require_verified: bool = field(
        default=False,
        metadata={
            "description": "Answer a subtask that no judge accepted with a plain 'not verified' message instead of "
            "its best-effort text (each result's `verified` says which is which either way)."
        },
    )
    max_subtasks: int = field(
        default=8, metadata={"description": "Cap on the number of subtasks the decomposer may produce."}
    )
    local_only: bool = field(
        default=False, metadata={"description": "Use only local (in-process llama.cpp) models, never an API."}
    )
    k: int = field(
        default=64, metadata={"description": "Number of nearest past subtasks the neighbour router looks at."}
    )
    min_neighbours: int = field(
        default=4,
        metadata={"description": "With at least this many similar past subtasks, the neighbours decide the route."},
    )
    min_similarity: float = field(
        default=0.3,
        metadata={"description": "Cosine similarity below which a past subtask does not count as a neighbour."},
    )
    taxonomy_confidence: float = field(
        default=0.5,
        metadata={"description": "Below this classifier confidence, the neighbours decide the route (if any exist)."},
    )
    router: str = field(
        default="hybrid",
        metadata={
            "description": "Routing strategy that predicts each model's success (fusiongraph/strategies: hybrid, "
            "knn, probe, taxonomy, or one you register)."
        },
    )
    price_sensitivity: float = field(
        default=0.01,
        metadata={
            "description": "Routing's price of quality, 0-0.5: how much predicted success one doubling of a model's "
            "predicted cost must buy. The first model maximises success - this x log2(cost); "
            "escalation goes on while the expected gain is worth its price. 0 = best quality at any "
            "price; higher = cheaper."
        },
    )
    judge_accuracy: float = field(
        default=0.8,
        metadata={
            "description": "How often the judges' accept/reject agrees with correctness (0.5-1): how much a "
            "rejection tells the router when it plans escalation."
        },
    )
    explore: float = field(
        default=1.0,
        metadata={
            "description": "Optimism for models with few recorded outcomes (0 = none): a new model is tried where "
            "its optimistic utility is best, and the bonus fades as its outcomes are recorded."
        },
    )
    max_tokens: int = field(default=256, metadata={"description": "Most output tokens per model call."})
    consistency_samples: int = field(
        default=3,
        metadata={
            "description": "Samples the consistency judge draws from the answering model (0-8; 0 turns it off): each "
            "a short extra call (at most the class's answer length) whose worst case is reserved in the budget. "
            "Asked only where the calibrated acceptance gives the judge a say."
        },
    )
    consistency_temperature: float = field(
        default=0.7,
        metadata={"description": "Sampling temperature of the consistency judge's samples (0-2, above 0)."},
    )
    llm_judge: bool = field(
        default=True, metadata={"description": "Ask an LLM judge to score each answer (prompts/judge.md)."}
    )
    judge_model: str = field(
        default="",
        metadata={
            "description": "Roster id of the LLM judge; empty picks the cheapest available API model, else the local one."
        },
    )
    planner_model: str = field(
        default="",
        metadata={
            "description": "Roster id of the model that decomposes and synthesises; empty picks the cheapest "
            "available API model, else the local one."
        },
    )
    guides: int = field(
        default=2,
        metadata={
            "description": "Accepted answers of stronger models on similar subtasks given to a cheaper model as "
            "worked examples (RAR); 0 turns guides off."
        },
    )
    request_timeout_s: float = field(default=60.0, metadata={"description": "Timeout of one API call in seconds."})
    store_dir: str = field(
        default="",
        metadata={
            "description": "Directory of the outcome store; empty uses $FUSIONGRAPH_STORE_DIR or the user data dir."
        },
    )
    discover_local: bool | None = field(
        default=None,
        metadata={
            "description": "Add the models this machine already has to the roster (OpenAI-compatible servers on "
            "loopback, GGUF files: fusiongraph/discovery.py), as trusted tiers at price 0. Empty (None) reads "
            "$FUSIONGRAPH_DISCOVER_LOCAL (default on)."
        },
    )
    models_path: str = field(
        default="",
        metadata={"description": "Model roster YAML; empty uses $FUSIONGRAPH_MODELS or the shipped store/models.yaml."},
    )
    taxonomy_path: str = field(
        default="",
        metadata={
            "description": "Task taxonomy YAML; empty uses $FUSIONGRAPH_TAXONOMY or the shipped store/taxonomy.yaml."
        },
    )

    def __post_init__(self) -> None:
        errors = []
        if not 0.0 <= self.quality_threshold <= 1.0:
            errors.append(f"quality_threshold must be in [0, 1], got {self.quality_threshold}")
        if self.budget_usd < 0:
            errors.append(f"budget_usd must be >= 0, got {self.budget_usd}")
        if self.max_subtasks < 1:
            errors.append(f"max_subtasks must be >= 1, got {self.max_subtasks}")
        if self.k < 0:
            errors.append(f"k must be >= 0, got {self.k}")
        from fusiongraph.strategies import STRATEGIES

        if self.router not in STRATEGIES:
            errors.append(f"router must be one of {sorted(STRATEGIES)}, got {self.router!r}")
        if not 0.0 <= self.price_sensitivity <= 0.5:
            errors.append(f"price_sensitivity must be in [0, 0.5], got {self.price_sensitivity}")
        if not 0.5 <= self.judge_accuracy <= 1.0:
            errors.append(f"judge_accuracy must be in [0.5, 1], got {self.judge_accuracy}")
        if self.explore < 0:
            errors.append(f"explore must be >= 0, got {self.explore}")
        if not 0 <= self.consistency_samples <= 8:
            errors.append(f"consistency_samples must be in [0, 8], got {self.consistency_samples}")
        if not 0.0 < self.consistency_temperature <= 2.0:
            errors.append(f"consistency_temperature must be in (0, 2], got {self.consistency_temperature}")
        if self.max_tokens < 1:
            errors.append(f"max_tokens must be >= 1, got {self.max_tokens}")
        if errors:
            raise ValueError("; ".join(errors))

    @classmethod
    def knob_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def as_context(value: FusionContext | dict | None) -> FusionContext:
    """Accept the context as given by Python callers, the CLI, Studio or the server (a dict)."""
    if value is None:
        return FusionContext()
    if isinstance(value, FusionContext):
        return value
    unknown = set(value) - set(FusionContext.knob_names())
    if unknown:
        raise ValueError(f"unknown context knobs: {sorted(unknown)}; known: {FusionContext.knob_names()}")
    return FusionContext(**value)
