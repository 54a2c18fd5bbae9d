"""The judges, one small module each, registered in :mod:`fusiongraph.judges` (its last lines).

A new judge: a module here with a class that has ``name``, ``weight``, ``reserve(...)`` and
``judge(Judging) -> Verdict | None`` (the :class:`fusiongraph.judges.Judge` protocol), decorated with
``@register_judge``, and one import line at the bottom of fusiongraph/judges.py.
"""

# importing any judge kind imports the registry first, which imports (and so registers) every judge
from fusiongraph import judges as _registry  # noqa: F401
