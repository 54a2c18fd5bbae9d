"""Judging an answer: the judges (kinds/, registered in base.py), the verifiers and the acceptance decision.

Importing anything from this package registers the built-in judges, in their run order.
"""

from fusiongraph.judging import kinds  # noqa: F401
