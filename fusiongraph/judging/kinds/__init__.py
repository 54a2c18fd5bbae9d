"""The built-in judges, one small module each, registered in the order they run (one line each).

A new judge: a module here with a class that has ``name``, ``weight``, ``reserve(...)`` and
``judge(Judging) -> Verdict | None`` (the :class:`fusiongraph.judging.base.Judge` protocol), decorated with
``@register_judge``, and one line below.
"""

from fusiongraph.judging.kinds import rules  # noqa: F401
from fusiongraph.judging.kinds import self_confidence  # noqa: F401
from fusiongraph.judging.kinds import key_confidence  # noqa: F401
from fusiongraph.judging.kinds import focus  # noqa: F401
from fusiongraph.judging.kinds import llm  # noqa: F401
from fusiongraph.judging.kinds import consistency  # noqa: F401
from fusiongraph.judging.kinds import crosscheck  # noqa: F401
