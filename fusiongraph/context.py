"""Runtime knobs of the fusion graph: one dataclass, shown with its descriptions in LangGraph Studio."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(kw_only=True)
class FusionContext:
    """Per-run configuration, passed as ``graph.invoke(..., context=FusionContext(...))`` or a dict."""

    quality_threshold: float = field(
        default=0.5,
        metadata={
            "range": (0.0, 1.0),
            "description": "Accept an answer when its probability of being right (0-1: an exact check, else the "
            "judges' calibrated acceptance, fusiongraph/judging/acceptance.py) reaches this; else escalate. 0.5: accept "
            "what is more likely right than wrong, the decision that is right most often; higher trades "
            "escalations for fewer wrong answers accepted.",
        },
    )
    budget_usd: float = field(
        default=0.05,
        metadata={
            "range": (0.0, None),
            "description": "Most USD one query may spend on every call (plan, answers, judges, synthesis): each call "
            "reserves its worst case first; the subtasks share what the plan left (fusiongraph/budget.py).",
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
        default=8,
        metadata={"range": (1, 256), "description": "Cap on the number of subtasks the decomposer may produce."},
    )
    local_only: bool = field(
        default=False, metadata={"description": "Use only local (in-process llama.cpp) models, never an API."}
    )
    k: int = field(
        default=64,
        metadata={"range": (0, 1024), "description": "Number of nearest past subtasks the neighbour router looks at."},
    )
    min_neighbours: int = field(
        default=4,
        metadata={
            "range": (0, 1024),
            "description": "With at least this many similar past subtasks, the neighbours decide the route.",
        },
    )
    min_similarity: float = field(
        default=0.3,
        metadata={
            "range": (-1.0, 1.0),
            "description": "Cosine similarity below which a past subtask does not count as a neighbour.",
        },
    )
    taxonomy_confidence: float = field(
        default=0.5,
        metadata={
            "range": (0.0, 1.0),
            "description": "Below this classifier confidence, the neighbours decide the route (if any exist).",
        },
    )
    router: str = field(
        default="hybrid",
        metadata={
            "description": "Routing strategy that predicts each model's success (fusiongraph/routing/strategies: hybrid, "
            "knn, probe, taxonomy, or one you register)."
        },
    )
    price_sensitivity: float | None = field(
        default=None,
        metadata={
            "range": (0.0, 10.0),
            "description": "Routing's price of quality, 0-10: how much predicted success the price of an average "
            "candidate must buy. The first model maximises success - this x cost / (the candidates' mean cost); "
            "escalation goes on while the expected gain is worth its price. 0 = best quality at any "
            "price; higher = cheaper. Empty (None, the default): chosen on the store, the cheapest point of its "
            "own replay that beats its best single model, raised if the judged cascade would cost more than that "
            "model (fusiongraph/routing/operating_point.py; 0.01 until the store has 200 subtasks with outcomes of the "
            "candidates).",
        },
    )
    judge_accuracy: float = field(
        default=0.8,
        metadata={
            "range": (0.5, 1.0),
            "description": "How often the judges' accept/reject agrees with correctness (0.5-1): how much a "
            "rejection tells the router when it plans escalation.",
        },
    )
    explore: float = field(
        default=1.0,
        metadata={
            "range": (0.0, 10.0),
            "description": "Optimism for models with few recorded outcomes (0 = none): a new model is tried where "
            "its optimistic utility is best, and the bonus fades as its outcomes are recorded.",
        },
    )
    max_tokens: int = field(
        default=1024,
        metadata={
            "range": (1, 32768),
            "description": "Most output tokens per model call (an answer also stops at its class's length, "
            "fusiongraph/defaults/taxonomy.yaml: step-by-step maths needs ~512).",
        },
    )
    consistency_samples: int = field(
        default=0,
        metadata={
            "range": (0, 8),
            "description": "Samples the consistency judge draws from the answering model (0-8): each a short extra "
            "call (at most the class's answer length) whose worst case is reserved in the budget. 0 (the default): "
            "the judge compares the answer with the cheaper tiers' answers only (other models err differently; "
            "on local models a sample costs as much compute as the answer). Asked only where the calibrated "
            "acceptance gives the judge a say.",
        },
    )
    consistency_temperature: float = field(
        default=0.7,
        metadata={
            "range": (0.01, 2.0),
            "description": "Sampling temperature of the consistency judge's samples (0.01-2).",
        },
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
    rewrite_standalone: bool = field(
        default=True,
        metadata={
            "description": "Let the planner rewrite a last message that depends on earlier turns ('and in "
            "French?') into a standalone query for routing and decomposition (guarded: a junk rewrite falls back "
            "to the message); off uses the last message as written, with no model call."
        },
    )
    guides: int = field(
        default=2,
        metadata={
            "range": (0, 8),
            "description": "Accepted answers of stronger models on similar subtasks given to a cheaper model as "
            "worked examples (RAR); 0 turns guides off.",
        },
    )
    request_timeout_s: float = field(
        default=60.0, metadata={"range": (0.1, 3600.0), "description": "Timeout of one API call in seconds."}
    )
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
            "loopback, GGUF files: fusiongraph/models/discovery.py), as trusted tiers at price 0. Empty (None) reads "
            "$FUSIONGRAPH_DISCOVER_LOCAL (default on)."
        },
    )
    privacy: str = field(
        default="route",
        metadata={
            "description": "Sensitive content (e-mail, phone, card, IBAN, national IDs, secrets, names with an "
            "identifier, your patterns: fusiongraph/privacy.py): 'route' sends such a subtask only to trusted "
            "models (local, or marked trusted), 'redact' masks the values before an untrusted model sees them and "
            "restores them in its answer, 'off' does not look. Planning and synthesis obey it too."
        },
    )
    privacy_store: str = field(
        default="masked",
        metadata={
            "description": "How the outcome store keeps a sensitive subtask: 'masked' (values replaced by "
            "placeholders) or 'none' (not recorded at all)."
        },
    )
    privacy_patterns: str = field(
        default="",
        metadata={
            "description": "YAML file of your own sensitive patterns (patterns: [{name, regex}]); empty uses "
            "$FUSIONGRAPH_PRIVACY_PATTERNS."
        },
    )
    cache: bool = field(
        default=True,
        metadata={
            "description": "Reuse an accepted answer for a near-identical subtask of the same class (same API key, "
            "never for sensitive subtasks) at $0, instead of running the cascade again."
        },
    )
    cache_similarity: float = field(
        default=0.97,
        metadata={
            "range": (0.8, 1.0),
            "description": "Cosine similarity (0.8-1) a new subtask needs to a cached one for its answer to be reused.",
        },
    )
    cache_ttl_s: float = field(
        default=7 * 24 * 3600.0,
        metadata={"range": (0.0, None), "description": "Seconds a cached answer may be reused (0 = never)."},
    )
    models_path: str = field(
        default="",
        metadata={
            "description": "Model roster YAML; empty uses $FUSIONGRAPH_MODELS or the shipped fusiongraph/defaults/models.yaml."
        },
    )
    taxonomy_path: str = field(
        default="",
        metadata={
            "description": "Task taxonomy YAML; empty uses $FUSIONGRAPH_TAXONOMY or the shipped fusiongraph/defaults/taxonomy.yaml."
        },
    )

    def __post_init__(self) -> None:
        errors = []
        for f in fields(self):  # every numeric knob's range, from its metadata (shown in Studio)
            lo, hi = f.metadata.get("range", (None, None))
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if (lo is not None and not value >= lo) or (hi is not None and not value <= hi) or value != value:
                errors.append(f"{f.name} must be {_show_range(lo, hi)}, got {value}")
        from fusiongraph.privacy import MODES
        from fusiongraph.routing.strategies import STRATEGIES

        if self.privacy not in MODES:
            errors.append(f"privacy must be one of 'off', 'route', 'redact', got {self.privacy!r}")
        if self.privacy_store not in ("masked", "none"):
            errors.append(f"privacy_store must be 'masked' or 'none', got {self.privacy_store!r}")
        if self.router not in STRATEGIES:
            errors.append(f"router must be one of {sorted(STRATEGIES)}, got {self.router!r}")
        if errors:
            raise ValueError("; ".join(errors))

    @classmethod
    def ranges(cls) -> dict[str, tuple]:
        """Knob name -> (low, high) for every knob with a range (None: unbounded on that side)."""
        return {f.name: f.metadata["range"] for f in fields(cls) if "range" in f.metadata}

    @classmethod
    def knob_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _show_range(lo, hi) -> str:
    if hi is None:
        return f">= {lo:g}"
    return f"in [{lo:g}, {hi:g}]"


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
