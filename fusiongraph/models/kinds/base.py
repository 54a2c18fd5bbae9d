"""The model-kind extension point: a :class:`ModelKind` per ``kind:`` of fusiongraph/defaults/models.yaml, in one registry.

A kind says what a roster entry of that kind needs (:meth:`ModelKind.validate`), whether it can be called
now (:meth:`ModelKind.unavailable_reason`), how to build its LangChain chat model (:meth:`ModelKind.build`),
how to ask it for token log-probabilities and alternatives (:meth:`ModelKind.with_logprobs`) and which of
its provider's errors are worth retrying (:meth:`ModelKind.is_transient`, asked by the cascade's
RetryPolicy through the registry-level :func:`is_transient`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Callable, ClassVar, TypeVar, overload

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.runnables import Runnable

if TYPE_CHECKING:
    from fusiongraph.models.roster import ModelSpec


class ModelKind(ABC):
    """How to reach the models of one ``kind``. Subclass, set ``name``, implement :meth:`build`; decorate
    the class with :func:`register_kind` and import its module in ``fusiongraph/models/kinds/__init__.py``."""

    name: ClassVar[str]
    local: ClassVar[bool] = False
    """Runs in-process: never skipped by ``local_only``; a helper role prefers any non-local model."""

    def validate(self, spec: ModelSpec) -> None:
        """Raise ValueError if the roster entry lacks what this kind needs (checked when the roster loads)."""

    def unavailable_reason(self, spec: ModelSpec, local_only: bool) -> str | None:
        """Why the model cannot be called right now (the cascade skips it and says why), else None."""
        if local_only and not self.local:
            return "local_only is set"
        return None

    @abstractmethod
    def build(self, spec: ModelSpec, max_tokens: int, timeout_s: float) -> BaseChatModel:
        """The chat model for this entry. It must not retry by itself: transient errors are retried by the
        graph's RetryPolicy (through :meth:`is_transient`); anything else moves the cascade on."""

    def is_transient(self, exc: BaseException) -> bool | None:
        """True: worth retrying; False: never retry; None: not this kind's provider's error (ask others)."""
        return None

    def with_logprobs(self, model: Runnable, top: int) -> Runnable:
        """The model (or a binding of it: tools, response format) set to return each generated token's
        log-probability and, with ``top`` > 0, the ``top`` most likely tokens at each step, in its
        ``response_metadata`` (read by :func:`fusiongraph.judging.kinds.key_confidence.token_entries`).
        Asked when a run wants log-probabilities (the ``logprobs`` knob). Default: the model unchanged (it
        gives what it gives)."""
        return model


MODEL_KINDS: dict[str, ModelKind] = {}

K = TypeVar("K", bound=type[ModelKind])


@overload
def register_kind(cls: K, *, replace: bool = False) -> K: ...
@overload
def register_kind(cls: None = None, *, replace: bool = False) -> Callable[[K], K]: ...


def register_kind(cls=None, *, replace=False):
    """Class decorator: register (an instance of) a :class:`ModelKind` under its ``name``.

    ``@register_kind`` or ``@register_kind(replace=True)`` (to replace a kind of the same name)."""

    def register(kind_cls):
        name = getattr(kind_cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{kind_cls.__name__} needs a class attribute `name` (the roster's `kind:`)")
        if name in MODEL_KINDS and not replace:
            raise ValueError(
                f"model kind {name!r} is already registered "
                f"({type(MODEL_KINDS[name]).__name__}); pass replace=True to replace it"
            )
        MODEL_KINDS[name] = kind_cls()
        return kind_cls

    return register if cls is None else register(cls)


def unregister_kind(name: str) -> None:
    MODEL_KINDS.pop(name, None)


def known_kinds() -> list[str]:
    return sorted(MODEL_KINDS)


def get_kind(name: str) -> ModelKind:
    try:
        return MODEL_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown model kind {name!r}; known kinds: {', '.join(known_kinds())}") from None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying? Each registered kind is asked in turn (the first that answers decides), then any
    timeout is transient. A refused connection, a 4xx or a malformed response is not: the cascade moves on."""
    for kind in list(MODEL_KINDS.values()):
        verdict = kind.is_transient(exc)
        if verdict is not None:
            return bool(verdict)
    import httpx

    return isinstance(exc, (TimeoutError, httpx.TimeoutException))


def env(name: str | None) -> str | None:
    """The value of an environment variable named in the roster (None if unnamed, unset or empty)."""
    return (os.environ.get(name) or None) if name else None
