"""Routing strategies: how the evidence about a model on a subtask becomes its predicted success.

One registry, as RouteLLM has for its routers. :meth:`fusiongraph.routing.router.Router.predict` gathers the
:class:`Evidence` (class rate, neighbours, success probe, cluster rate) and asks the strategy named by
the ``router`` context knob (or the bench's strategy) for P(success); costs and the plan
(:func:`fusiongraph.routing.rule.plan_utility`) are the same for every strategy. Adding one is a new file in
this folder with a class decorated ``@register`` and one line below.
"""

from fusiongraph.routing.strategies.base import STRATEGIES, Evidence, Strategy, get_strategy, register

# the built-in strategies: one line each
from fusiongraph.routing.strategies import taxonomy  # noqa: E402,F401
from fusiongraph.routing.strategies import knn  # noqa: E402,F401
from fusiongraph.routing.strategies import probe  # noqa: E402,F401
from fusiongraph.routing.strategies import hybrid  # noqa: E402,F401

__all__ = ["STRATEGIES", "Evidence", "Strategy", "get_strategy", "register"]
