"""Runtime knobs of the fusion graph: one pydantic model, shown with its descriptions and ranges in LangGraph
Studio and validated wherever a context is made (Python, the CLI, Studio, the server)."""

from __future__ import annotations

from annotated_types import Ge, Le
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fusiongraph.privacy import MODES
from fusiongraph.routing.strategies import STRATEGIES


class FusionContext(BaseModel):
    """Per-run configuration, passed as ``graph.invoke(..., context=FusionContext(...))`` or a dict."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    quality_threshold: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Accept an answer when its probability of being right (0-1: an exact check, else the judges' calibrated acceptance, fusiongraph/judging/acceptance.py) reaches this; else escalate. 0.5: accept what is more likely right than wrong, the decision that is right most often; higher trades escalations for fewer wrong answers accepted.",
    )
    budget_usd: float = Field(
        default=0.05,
        ge=0.0,
        description="Most USD one query may spend on every call (plan, answers, judges, synthesis): each call reserves its worst case first; the subtasks share what the plan left (fusiongraph/budget.py).",
    )
    require_verified: bool = Field(
        default=False,
        description="Answer a subtask that no judge accepted with a plain 'not verified' message instead of its best-effort text (each result's `verified` says which is which either way).",
    )
    max_subtasks: int = Field(
        default=8, ge=1, le=256, description="Cap on the number of subtasks the decomposer may produce."
    )
    local_only: bool = Field(default=False, description="Use only local (in-process llama.cpp) models, never an API.")
    k: int = Field(
        default=64, ge=0, le=1024, description="Number of nearest past subtasks the neighbour router looks at."
    )
    min_neighbours: int = Field(
        default=4,
        ge=0,
        le=1024,
        description="With at least this many similar past subtasks, the neighbours decide the route.",
    )
    min_similarity: float = Field(
        default=0.3,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity below which a past subtask does not count as a neighbour.",
    )
    taxonomy_confidence: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Below this classifier confidence, the neighbours decide the route (if any exist).",
    )
    router: str = Field(
        default="hybrid",
        description="Routing strategy that predicts each model's success (fusiongraph/routing/strategies: hybrid, knn, probe, taxonomy, or one you register).",
    )
    price_sensitivity: float | None = Field(
        default=None,
        ge=0.0,
        le=10.0,
        description="Routing's price of quality, 0-10: how much predicted success the price of an average candidate must buy. The first model maximises success - this x cost / (the candidates' mean cost); escalation goes on while the expected gain is worth its price. 0 = best quality at any price; higher = cheaper. Empty (None, the default): chosen on the store, the cheapest point of its own replay that beats its best single model, raised if the judged cascade would cost more than that model (fusiongraph/routing/operating_point.py; 0.01 until the store has 200 subtasks with outcomes of the candidates).",
    )
    judge_accuracy: float = Field(
        default=0.8,
        ge=0.5,
        le=1.0,
        description="How often the judges' accept/reject agrees with correctness (0.5-1): how much a rejection tells the router when it plans escalation.",
    )
    explore: float = Field(
        default=1.0,
        ge=0.0,
        le=10.0,
        description="Optimism for models with few recorded outcomes (0 = none): a new model is tried where its optimistic utility is best, and the bonus fades as its outcomes are recorded.",
    )
    max_tokens: int = Field(
        default=1024,
        ge=1,
        le=32768,
        description="Most output tokens per model call (an answer also stops at its class's length, fusiongraph/defaults/taxonomy.yaml: step-by-step maths needs ~512).",
    )
    consistency_samples: int = Field(
        default=0,
        ge=0,
        le=8,
        description="Samples the consistency judge draws from the answering model (0-8): each a short extra call (at most the class's answer length) whose worst case is reserved in the budget. 0 (the default): the judge compares the answer with the cheaper tiers' answers only (other models err differently; on local models a sample costs as much compute as the answer). Asked only where the calibrated acceptance gives the judge a say.",
    )
    consistency_temperature: float = Field(
        default=0.7, ge=0.01, le=2.0, description="Sampling temperature of the consistency judge's samples (0.01-2)."
    )
    llm_judge: bool = Field(default=True, description="Ask an LLM judge to score each answer (prompts/judge.md).")
    logprobs: bool = Field(
        default=False,
        description="Keep each answer's token log-probabilities in its attempt, where the model returns them "
        "(the endpoint's `logprobs`).",
    )
    top_logprobs: int = Field(
        default=0,
        ge=0,
        le=20,
        description="With `logprobs`: also keep the most likely tokens at each step of the answer (0-20), where the "
        "model returns them (the local llama.cpp tiers and OpenAI-style APIs do; the endpoint's `top_logprobs`).",
    )
    judge_model: str = Field(
        default="",
        description="Roster id of the LLM judge; empty picks the cheapest available API model, else the local one.",
    )
    planner_model: str = Field(
        default="",
        description="Roster id of the model that decomposes and synthesises; empty picks the cheapest available API model, else the local one.",
    )
    rewrite_standalone: bool = Field(
        default=True,
        description="Let the planner rewrite a last message that depends on earlier turns ('and in French?') into a standalone query for routing and decomposition (guarded: a junk rewrite falls back to the message); off uses the last message as written, with no model call.",
    )
    guides: int = Field(
        default=2,
        ge=0,
        le=8,
        description="Accepted answers of stronger models on similar subtasks given to a cheaper model as worked examples (RAR); 0 turns guides off.",
    )
    request_timeout_s: float = Field(default=60.0, ge=0.1, le=3600.0, description="Timeout of one API call in seconds.")
    store_dir: str = Field(
        default="",
        description="Directory of the outcome store; empty uses $FUSIONGRAPH_STORE_DIR or the user data dir.",
    )
    discover_local: bool | None = Field(
        default=None,
        description="Add the models this machine already has to the roster (OpenAI-compatible servers on loopback, GGUF files: fusiongraph/models/discovery.py), as trusted tiers at price 0. Empty (None) reads $FUSIONGRAPH_DISCOVER_LOCAL (default on).",
    )
    privacy: str = Field(
        default="route",
        description="Sensitive content (e-mail, phone, card, IBAN, national IDs, secrets, names with an identifier, your patterns: fusiongraph/privacy.py): 'route' sends such a subtask only to trusted models (local, or marked trusted), 'redact' masks the values before an untrusted model sees them and restores them in its answer, 'off' does not look. Planning and synthesis obey it too.",
    )
    privacy_store: str = Field(
        default="masked",
        description="How the outcome store keeps a sensitive subtask: 'masked' (values replaced by placeholders) or 'none' (not recorded at all).",
    )
    privacy_patterns: str = Field(
        default="",
        description="YAML file of your own sensitive patterns (patterns: [{name, regex}]); empty uses $FUSIONGRAPH_PRIVACY_PATTERNS.",
    )
    cache: bool = Field(
        default=True,
        description="Reuse an accepted answer for a near-identical subtask of the same class (same API key, never for sensitive subtasks) at $0, instead of running the cascade again.",
    )
    cache_similarity: float = Field(
        default=0.97,
        ge=0.8,
        le=1.0,
        description="Cosine similarity (0.8-1) a new subtask needs to a cached one for its answer to be reused.",
    )
    cache_ttl_s: float = Field(
        default=7 * 24 * 3600.0, ge=0.0, description="Seconds a cached answer may be reused (0 = never)."
    )
    models_path: str = Field(
        default="",
        description="Model roster YAML; empty uses $FUSIONGRAPH_MODELS or the shipped fusiongraph/defaults/models.yaml.",
    )
    taxonomy_path: str = Field(
        default="",
        description="Task taxonomy YAML; empty uses $FUSIONGRAPH_TAXONOMY or the shipped fusiongraph/defaults/taxonomy.yaml.",
    )

    @field_validator("privacy")
    @classmethod
    def _privacy_mode(cls, value: str) -> str:
        if value not in MODES:
            raise ValueError(f"privacy must be one of {', '.join(repr(m) for m in MODES)}, got {value!r}")
        return value

    @field_validator("privacy_store")
    @classmethod
    def _privacy_store(cls, value: str) -> str:
        if value not in ("masked", "none"):
            raise ValueError(f"privacy_store must be 'masked' or 'none', got {value!r}")
        return value

    @field_validator("router")
    @classmethod
    def _known_router(cls, value: str) -> str:
        if value not in STRATEGIES:
            raise ValueError(f"router must be one of {sorted(STRATEGIES)}, got {value!r}")
        return value

    def replace(self, **changes) -> FusionContext:
        """A copy with some knobs changed, validated."""
        return type(self).model_validate(self.model_dump() | changes)

    @classmethod
    def ranges(cls) -> dict[str, tuple]:
        """Knob name -> (low, high) for every knob with a range (None: unbounded on that side)."""
        out = {}
        for name, info in cls.model_fields.items():
            lo = next((m.ge for m in info.metadata if isinstance(m, Ge)), None)
            hi = next((m.le for m in info.metadata if isinstance(m, Le)), None)
            if lo is not None or hi is not None:
                out[name] = (lo, hi)
        return out

    @classmethod
    def knob_names(cls) -> list[str]:
        return list(cls.model_fields)


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
