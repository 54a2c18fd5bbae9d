"""The model roster: which models exist, what they cost, and how to reach them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from fusiongraph.models.gguf_parts import GgufParts, cache_dir
from fusiongraph.models.kinds import ModelKind, env, get_kind
from fusiongraph.prompts import load_prompt
from fusiongraph.text import QueryError, estimate_tokens, load_yaml_mapping


class CapabilityError(QueryError):
    """No available model can do what the request needs (tools, json, vision): the client's error (4xx)."""

    def __init__(self, message: str, capability: str):
        super().__init__(message)
        self.capability = capability


HELPER_CALL_TOKENS = (1024, 256)  # a typical plan, judge or synthesis call: tokens in, out
HELPER_BUDGET_SHARE = 0.25  # an in-process helper is chosen only if such a call costs at most this share of the budget
LARGE_LOCAL_BYTES = 1 << 30  # an in-process GGUF this big or bigger is "large": at most one is held at once


class ModelSpec(BaseModel):
    """One model of the roster (a row of models.yaml)."""

    id: str
    kind: str = Field(description="a registered model kind (fusiongraph/models/kinds/): local, openai, ...")
    description: str = ""
    model: str | None = None  # API model name
    model_env: str | None = None  # env var holding the API model name (overrides `model`)
    api_key_env: str | None = None
    base_url: str | None = None
    base_url_env: str | None = None
    gguf_package: str | None = None
    gguf_file: str | None = None
    gguf_path: str | None = None
    gguf_path_env: str | None = None
    gguf_parts: GgufParts | None = Field(
        default=None, description="a GGUF shipped as numbered part packages, joined into the cache and verified"
    )
    context: int = Field(default=4096, gt=0)
    price_in: float = Field(default=0.0, ge=0, description="USD per 1M input tokens")
    price_out: float = Field(default=0.0, ge=0, description="USD per 1M output tokens")
    usd_per_hour: float | None = Field(
        default=None,
        ge=0,
        description="a local model's price: the machine's USD per hour; a call costs its measured compute seconds "
        "times this (price_in / price_out are then derived from tokens_per_s, for planning and reservations)",
    )
    tokens_per_s: tuple[float, float] | None = Field(
        default=None,
        description="[prompt, output] tokens per second of the local model on a loaded machine (with usd_per_hour)",
    )
    logprobs: bool = False
    timeout_s: float | None = None
    answers: bool = Field(default=True, description="false: only a judge or planner, never a cascade tier")
    options: dict[str, Any] = Field(
        default_factory=dict, description="kind-specific settings, passed to the kind's chat model"
    )
    source: str = Field(default="models.yaml", description="where the entry came from: models.yaml, discovered:<where>")
    trusted: bool = Field(
        default=False, description="runs on this machine (a discovered model): a local_only run may use it"
    )
    strength: float | None = Field(
        default=None, description="estimated strength (parameters in billions): orders equal-priced models"
    )
    capabilities: list[str] = Field(
        default_factory=list,
        description="what the model can do besides text: tools (function calling), json (response_format "
        "json_object / json_schema), vision (image parts); a request that needs one goes only to models that have it",
    )

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        get_kind(kind)  # ValueError naming the known kinds
        return kind

    @model_validator(mode="after")
    def _check_kind(self) -> "ModelSpec":
        self.model_kind.validate(self)
        if self.usd_per_hour is not None:
            if not self.tokens_per_s or min(self.tokens_per_s) <= 0:
                raise ValueError(f"model {self.id!r}: usd_per_hour needs tokens_per_s: [prompt, output] > 0")
            per_token = self.usd_per_hour / 3600 * 1e6  # USD per 1M tokens at 1 token/s
            self.price_in, self.price_out = per_token / self.tokens_per_s[0], per_token / self.tokens_per_s[1]
        return self

    @property
    def model_kind(self) -> ModelKind:
        return get_kind(self.kind)

    @property
    def is_local(self) -> bool:
        """Runs in-process (never skipped by local_only)."""
        return self.model_kind.local

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        """USD of a call by its tokens (a priced-by-the-hour model: at its nominal tokens_per_s)."""
        return (tokens_in * self.price_in + tokens_out * self.price_out) / 1e6

    def call_cost(self, tokens_in: int, tokens_out: int, seconds: float | None) -> float:
        """USD of a call that was made: a priced-by-the-hour model's measured compute seconds x its hourly
        price, else (or with no seconds measured) its tokens at the per-token prices."""
        if self.usd_per_hour is not None and seconds is not None:
            return seconds * self.usd_per_hour / 3600
        return self.cost(tokens_in, tokens_out)

    def usage(self, message: AIMessage | None, prompt_text: str) -> dict:
        """Tokens in/out of one call (as the model reported them, else estimated) and their cost in USD."""
        usage = getattr(message, "usage_metadata", None) or {}
        tokens_in = int(usage.get("input_tokens") or estimate_tokens(prompt_text))
        out_text = message.text if message is not None else ""
        tokens_out = int(usage.get("output_tokens") or (estimate_tokens(out_text) if out_text else 0))
        return {"tokens_in": tokens_in, "tokens_out": tokens_out, "cost_usd": self.cost(tokens_in, tokens_out)}

    @property
    def blended_price(self) -> float:
        """Price of a typical call (3 input tokens per output token), for ordering cheapest first."""
        return 3 * self.price_in + self.price_out

    def unavailable_reason(self, local_only: bool) -> str | None:
        """Why this model cannot be called right now (never an error: the cascade skips it). A trusted model
        (one on this machine, e.g. a discovered loopback server) counts as local for `local_only`."""
        return self.model_kind.unavailable_reason(self, local_only and not self.trusted)

    @property
    def large(self) -> bool:
        """An in-process model whose GGUF is at least LARGE_LOCAL_BYTES: only one is held at once."""
        if not self.is_local or not self.gguf_path:
            return False
        try:
            return Path(self.gguf_path).expanduser().stat().st_size >= LARGE_LOCAL_BYTES
        except OSError:
            return False

    def fingerprint(self) -> str:
        """A hash of the roster entry as it resolves now (its env-given model name and URL included, never its
        key): a cached answer is served only while its model's entry is the same."""
        data = self.model_dump(mode="json", exclude={"description", "source"})
        data["resolved"] = [env(self.model_env) or self.model, env(self.base_url_env) or self.base_url]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def secrets(self) -> list[str]:
        """Secret values to redact from anything shown or stored."""
        value = env(self.api_key_env)
        return [value] if value and len(value) >= 4 else []


class Roster:
    """The configured models in roster order; chat models are built lazily and cached."""

    def __init__(self, specs: list[ModelSpec], chat_models: dict[str, BaseChatModel] | None = None):
        ids = [s.id for s in specs]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"duplicate model ids in roster: {sorted(dupes)}")
        self.specs = {s.id: s for s in specs}
        self._order = ids
        self._chat: dict[tuple, BaseChatModel] = {}
        self._given = dict(chat_models or {})  # injected models (tests, embedding applications)
        self.notes: list[str] = []  # what discovery skipped, and why

    @classmethod
    def from_yaml(cls, path: str | Path, discover: bool = False, discovered=None) -> "Roster":
        """The roster of a models.yaml; `discover`: add the local models found on this machine
        (:mod:`fusiongraph.models.discovery`, or the given `discovered` Discovery), filtered by the file's optional
        `discovery:` section (exclude / pin); what was skipped is in :attr:`notes`."""
        rows = load_yaml_mapping(path, "model roster", "models", list)
        specs = []
        for i, row in enumerate(rows):
            try:
                specs.append(ModelSpec.model_validate(row))
            except ValidationError as exc:
                raise ValueError(f"model roster {path}, entry {i} ({(row or {}).get('id')!r}): {exc}") from None
        notes: list[str] = []
        if discover or discovered is not None:
            from fusiongraph.models import discovery

            policy = _discovery_policy(path)
            found = discovered if discovered is not None else discovery.discover()
            configured = [
                {
                    **s.model_dump(),
                    "base_url": s.base_url or env(s.base_url_env),
                    "model": env(s.model_env) or s.model,
                    "gguf_path": env(s.gguf_path_env)
                    or s.gguf_path
                    or _package_file(s.gguf_package, s.gguf_file)
                    or (str(cache_dir() / s.gguf_parts.file) if s.gguf_parts else None),
                }
                for s in specs
            ]
            kept = discovery.apply_policy(found.specs, policy, configured)
            notes = found.notes + kept.notes
            taken = {s.id for s in specs}
            for row in kept.specs:
                if row.get("id") in taken:
                    notes.append(f"skipped discovered {row.get('id')!r}: models.yaml has a model of that id")
                    continue
                try:
                    specs.append(ModelSpec.model_validate(row))
                except ValidationError as exc:
                    notes.append(f"skipped discovered {row.get('id')!r}: {exc}")
                    continue
                taken.add(row["id"])
        roster = cls(specs)
        roster.notes = notes
        return roster

    def __getitem__(self, model_id: str) -> ModelSpec:
        try:
            return self.specs[model_id]
        except KeyError:
            raise KeyError(f"unknown model {model_id!r}; the roster has {self._order}") from None

    def ids(self) -> list[str]:
        return list(self._order)

    def by_cost(self, ids: list[str] | None = None) -> list[str]:
        """Ids ordered cheapest first; among equal prices the stronger first (a strength estimate, e.g. of a
        discovered model; unknown counts as 0), then roster order."""
        ids = self._order if ids is None else [i for i in ids if i in self.specs]
        return sorted(
            ids,
            key=lambda i: (self.specs[i].blended_price, -(self.specs[i].strength or 0.0), self._order.index(i)),
        )

    def availability(
        self, local_only: bool, answering: bool = False, requires: list[str] | tuple = ()
    ) -> tuple[list[str], list[dict]]:
        """(available ids cheapest first, skipped models with the reason); `answering`: cascade tiers only;
        `requires`: capabilities a model must have (tools, json, vision), else it is skipped saying which."""
        available, skipped = [], []
        for model_id in self.by_cost():
            if answering and not self.specs[model_id].answers:
                continue
            missing = [c for c in requires if c not in self.specs[model_id].capabilities]
            if missing:
                skipped.append({"model": model_id, "reason": f"lacks the {'+'.join(missing)} capability"})
                continue
            if model_id in self._given:
                available.append(model_id)
                continue
            reason = self[model_id].unavailable_reason(local_only)
            if reason:
                skipped.append({"model": model_id, "reason": reason})
            else:
                available.append(model_id)
        return available, skipped

    def check_capable(self, local_only: bool, requires: list[str] | tuple) -> None:
        """CapabilityError (a 4xx at the endpoint) when no available answering model has every capability
        the request needs, naming it and how to configure a model that has it."""
        if not requires or self.availability(local_only, answering=True, requires=requires)[0]:
            return
        need = "+".join(requires)
        having = [m for m in self._order if all(c in self.specs[m].capabilities for c in requires)]
        why = (
            f"the roster's models with it ({', '.join(having)}) are not available now (no key or URL set"
            f"{', or local_only is set' if local_only else ''})"
            if having
            else "no model in the roster has it"
        )
        raise CapabilityError(
            f"this request needs a model with the {need!r} capability, and {why}; configure one: add "
            f"`capabilities: [{', '.join(requires)}]` to a model in models.yaml that supports it (e.g. gpt-4o-mini "
            f"with OPENAI_API_KEY set, or an OpenAI-compatible server) - README, Models",
            need,
        )

    def helper(self, available: list[str], preferred: str = "", budget_usd: float | None = None) -> str | None:
        """The model for a helper role (decompose, judge, synthesise): the preferred one if available,
        else the cheapest available API model (better than a small local one at following formats),
        else the cheapest (at equal prices the strongest) trusted server on this machine, else the strongest
        available in-process model whose typical helper call (:data:`HELPER_CALL_TOKENS`) costs at most
        :data:`HELPER_BUDGET_SHARE` of `budget_usd` (no budget given: the strongest), else the cheapest."""
        if preferred:
            if preferred not in self.specs:
                raise KeyError(f"unknown model {preferred!r}; the roster has {self._order}")
            if preferred in available:
                return preferred
        api = [m for m in available if not self.specs[m].is_local and not self.specs[m].trusted]
        served = [m for m in available if not self.specs[m].is_local]  # e.g. a discovered loopback server
        if api or served:
            return (api or served)[0]
        if not available:
            return None
        fits = [
            m
            for m in available
            if budget_usd is None or self.specs[m].cost(*HELPER_CALL_TOKENS) <= budget_usd * HELPER_BUDGET_SHARE
        ]
        if not fits:
            return available[0]
        return max(fits, key=lambda m: (self.specs[m].strength or 0.0, self.specs[m].blended_price))

    def strongest(self, local_only: bool = False) -> str:
        """The costliest available answering model (none available: the costliest configured one): the baseline
        a fused answer is compared with."""
        available = self.availability(local_only, answering=True)[0]
        return (available or self.by_cost([i for i in self._order if self.specs[i].answers]))[-1]

    def strongest_alone(self, results: list[dict], default_tokens_out: int = 256, local_only: bool = False) -> dict:
        """What the strongest model alone would have cost answering every subtask once: each subtask's
        tokens are those of its final answer where one was given (as its model reported them), else
        estimated (the answer prompt plus the subtask in; the subtask's class answer length out)."""
        model_id = self.strongest(local_only)
        system = estimate_tokens(load_prompt("answer"))
        tokens_in = tokens_out = 0
        for r in results:
            final = next(
                (a for a in r.get("attempts") or [] if a.get("model") == r.get("answered_by") and a.get("answer")), None
            )
            if final is not None and final.get("tokens_in"):
                tokens_in += int(final["tokens_in"])
                tokens_out += int(final.get("tokens_out") or estimate_tokens(final["answer"]))
            else:
                tokens_in += system + estimate_tokens(r.get("subtask") or "")
                tokens_out += (
                    estimate_tokens(r["answer"])
                    if r.get("answer")
                    else int(r.get("answer_tokens") or default_tokens_out)
                )
        return {
            "strongest_model": model_id,
            "strongest_alone_tokens_in": tokens_in,
            "strongest_alone_tokens_out": tokens_out,
            "strongest_alone_cost_usd": self[model_id].cost(tokens_in, tokens_out),
        }

    def secrets(self) -> list[str]:
        return [s for spec in self.specs.values() for s in spec.secrets()]

    def chat_model(self, model_id: str, max_tokens: int, timeout_s: float) -> BaseChatModel:
        if model_id in self._given:
            return self._given[model_id]
        key = (model_id, max_tokens, timeout_s)
        if key not in self._chat:
            spec = self[model_id]
            if spec.large:  # at most one large in-process model held at once: drop the others first
                for other in [k for k in self._chat if k[0] != model_id and self.specs[k[0]].large]:
                    del self._chat[other]
                    from fusiongraph.models.local_llm import release_llama

                    release_llama(self.specs[other[0]].gguf_path)  # and llama.cpp's instance with it
            self._chat[key] = self._build(spec, max_tokens, timeout_s)
        return self._chat[key]

    @staticmethod
    def _build(spec: ModelSpec, max_tokens: int, timeout_s: float) -> BaseChatModel:
        return spec.model_kind.build(spec, max_tokens, timeout_s)


def _discovery_policy(path: str | Path) -> dict:
    """models.yaml's optional `discovery:` mapping ({exclude: [...], pin: {...}})."""
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    policy = data.get("discovery") or {}
    if not isinstance(policy, dict):
        raise ValueError(f"model roster {path}: `discovery:` must be a mapping (exclude: [...], pin: {{...}})")
    if not isinstance(policy.get("exclude") or [], list) or not isinstance(policy.get("pin") or {}, dict):
        raise ValueError(f"model roster {path}: discovery.exclude must be a list, discovery.pin a mapping")
    return policy


def _package_file(package: str | None, filename: str | None) -> str | None:
    """The path of a file shipped in an installed package (found, not imported), else None."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package) if package and filename else None
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(list(spec.submodule_search_locations)[0]) / filename)
