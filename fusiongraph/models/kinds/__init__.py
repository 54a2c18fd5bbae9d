"""Model kinds: one module per ``kind:`` of fusiongraph/defaults/models.yaml, registered in the registry below.

Adding a kind: a new module here with a :class:`ModelKind` subclass decorated with ``@register_kind``,
and one import line below (a kind can also be registered from outside the package, e.g. by a test or an
application, before the roster is loaded).
"""

from fusiongraph.models.kinds.base import (
    MODEL_KINDS,
    ModelKind,
    env,
    get_kind,
    is_transient,
    known_kinds,
    register_kind,
    unregister_kind,
)

# the built-in kinds: one line each
from fusiongraph.models.kinds import local  # noqa: E402,F401  kind: local
from fusiongraph.models.kinds import openai_api  # noqa: E402,F401  kind: openai
from fusiongraph.models.kinds import openai_compatible  # noqa: E402,F401  kind: openai_compatible

__all__ = [
    "MODEL_KINDS",
    "ModelKind",
    "env",
    "get_kind",
    "is_transient",
    "known_kinds",
    "register_kind",
    "unregister_kind",
]
