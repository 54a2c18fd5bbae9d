"""The query budget: worst-case bounds of every model call, and how one `budget_usd` is shared by a run.

Every call of a run is charged against ``budget_usd``: the plan (decompose), each answer, each LLM judge,
and the synthesis. Before a call its *worst case* is reserved: the cost of the most input tokens the
prompt can be (:func:`prompt_bound`) plus the call's ``max_tokens`` of output, at the model's prices.

The bound on input tokens never undercounts:

- text: the model's own tokenizer where one is at hand (the in-process llama.cpp model's
  ``count_tokens``), else the UTF-8 byte length (:func:`token_bound`) - every token of a byte-level BPE
  or a byte-fallback SentencePiece vocabulary covers at least one byte (a tokenizer that normalises
  with NFKC is covered too: the larger of the two byte lengths is taken);
- chat framing: :data:`PER_MESSAGE_TOKENS` per message (role markers, separators, a tokenizer's dummy
  prefix; OpenAI documents 3-4, chat templates of llama.cpp models use 4-6) plus :data:`PER_CALL_TOKENS`
  per call (BOS, the reply's priming tokens);
- structured output / function calling: the tool's JSON schema counted as text, plus
  :data:`STRUCTURED_OUTPUT_TOKENS` (the provider's tool preamble; OpenAI's rendering of a tool is
  shorter than its JSON). Output tokens (tool-call framing included) never pass the call's max_tokens.

How the run shares the budget (B; every check is against ``B * (1 - SLACK)`` so that float rounding in
the sums can never tip the total over B):

0. standalone: a conversation's last message that depends on earlier turns is rewritten by the planner
   only if B covers the rewrite's worst case plus the cheapest worst-case answer; its actual cost W counts
   as plan (below, P includes W, and the decompose check is made against B - W).
1. decompose: the planner is called only if B covers its worst case plus the cheapest worst-case answer
   of the whole query; else the whole query is one subtask (no plan call, no synthesis).
2. with P the plan's actual cost and R = B - P, n > 1 subtasks: the synthesis's estimate H is held back
   when it is no bigger than an equal share (answers come first), and each parallel branch gets a fixed
   share (R - H) / n; a single subtask gets all of R.
3. cascade: a branch's calls run in sequence, and a call (answer + its judge) is made only if what the
   branch spent plus the call's worst case fits the share; the judge's reservation is a true worst case
   because the answer it reads is trimmed to the reserved allowance.
4. synthesize: runs after every branch, so it may use everything not yet spent: B - P - sum(branches).
   If its worst case (from the actual prompt) does not fit, the answers are joined without a model call.

So the total is P + sum(branches) + S <= B: each term is at most what was checked against before the call.
This holds as long as providers bill no more than they are sent and honour max_tokens; a failed call
(an exception, no usage reported) is charged 0.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Callable, Iterable

from langchain_core.messages import BaseMessage

PER_MESSAGE_TOKENS = 8
PER_CALL_TOKENS = 16
STRUCTURED_OUTPUT_TOKENS = 64
SLACK = 1e-9  # relative: the budget checks use B * (1 - SLACK)
PLAN_NODES = ("standalone", "decompose")  # the trace events whose cost is the run's plan

Counter = Callable[[str], int]


def token_bound(text: str) -> int:
    """Tokens a text can be for any tokenizer whose every token covers >= 1 byte: its UTF-8 length
    (the NFKC-normalised form's, if longer). Never below a real count; ~3-4x it for English."""
    raw = len(text.encode("utf-8", "replace"))
    if text.isascii():
        return raw
    return max(raw, len(unicodedata.normalize("NFKC", text).encode("utf-8", "replace")))


def counter_for(model) -> Counter:
    """The model's own tokenizer (exact) when it has one, else the byte bound."""
    count = getattr(model, "count_tokens", None)
    return count if callable(count) else token_bound


def schema_text(schema) -> str:
    """The JSON of a structured-output schema as a function-calling tool (what the provider is sent)."""
    from langchain_core.utils.function_calling import convert_to_openai_tool

    return json.dumps(convert_to_openai_tool(schema), ensure_ascii=False)


def message_text(m: BaseMessage) -> str:
    """All a message sends as text: its content's text and its tool calls (name and arguments)."""
    calls = getattr(m, "tool_calls", None) or []
    return m.text + "".join(json.dumps([tc.get("name"), tc.get("args")], ensure_ascii=False) for tc in calls)


def request_text(request) -> str:
    """The JSON a request's tools and response format add to a call (counted like a structured-output schema)."""
    if not request:
        return ""
    parts = [request.get("tools"), (request.get("response_format") or {}).get("json_schema")]
    return "".join(json.dumps(p, ensure_ascii=False) for p in parts if p)


def prompt_bound(messages: Iterable[BaseMessage | str], count: Counter = token_bound, schema=None, request=None) -> int:
    """Most input tokens a call with these messages (and, for structured output, this schema; for a request
    with tools or a JSON schema, those) can be. Image parts are not counted: a model with vision bills them
    by size, outside this bound."""
    total = PER_CALL_TOKENS
    for m in messages:
        total += count(m if isinstance(m, str) else message_text(m)) + PER_MESSAGE_TOKENS
    if schema is not None:
        total += count(schema_text(schema)) + STRUCTURED_OUTPUT_TOKENS
    extra = request_text(request)
    if extra:
        total += count(extra) + STRUCTURED_OUTPUT_TOKENS
    return total


def charge(spec, message, prompt_text: str, in_bound: int, max_out: int) -> dict:
    """What a call cost: the tokens the model reported; where it reported none, ModelSpec.usage's
    estimate, never above the call's bounds (the output cannot pass max_tokens). A local model priced by
    the hour is charged the compute seconds it reported (``compute_s``, also returned), which can pass its
    reservation when the machine runs slower than its nominal tokens_per_s."""
    usage = spec.usage(message, prompt_text)
    reported = getattr(message, "usage_metadata", None) or {}
    for key, reported_key, bound in (("tokens_in", "input_tokens", in_bound), ("tokens_out", "output_tokens", max_out)):
        if reported.get(reported_key) is not None:
            usage[key] = int(reported[reported_key])  # a reported 0 is 0, not "unknown"
        else:
            usage[key] = min(usage[key], bound)
    seconds = (getattr(message, "response_metadata", None) or {}).get("compute_s")
    usage["cost_usd"] = spec.call_cost(usage["tokens_in"], usage["tokens_out"], seconds)
    if seconds is not None:
        usage["compute_s"] = float(seconds)
    return usage


@dataclass
class Ledger:
    """What one scope may still spend: the query's budget (:meth:`for_query`) or a subtask's fixed share.
    Before a call, :meth:`covers` its worst case (and what must be kept for later calls); after it,
    :meth:`charge` what it actually cost. Every node that calls a model asks one."""

    limit_usd: float
    spent_usd: float = 0.0

    @classmethod
    def for_query(cls, budget_usd: float, spent_usd: float = 0.0) -> Ledger:
        return cls(usable(budget_usd), spent_usd)

    @property
    def left_usd(self) -> float:
        return self.limit_usd - self.spent_usd

    def covers(self, worst_usd: float, keep_usd: float = 0.0) -> bool:
        """Whether a call costing at most `worst_usd` fits, with `keep_usd` left for what must follow."""
        return not worst_usd + keep_usd > self.left_usd

    def charge(self, usd: float) -> None:
        self.spent_usd += usd


def usable(budget_usd: float) -> float:
    """The part of the budget the checks may use (see SLACK)."""
    return max(budget_usd, 0.0) * (1.0 - SLACK)


def shares(budget_usd: float, plan_cost: float, n: int, synthesis_estimate: float) -> tuple[float, float]:
    """(held back for synthesis, each branch's share) after a plan that cost `plan_cost`.

    n * share + held <= usable(budget) - plan_cost: the branches together can never pass what is left."""
    left = max(usable(budget_usd) - plan_cost, 0.0)
    if n <= 1:
        return 0.0, left
    held = synthesis_estimate if synthesis_estimate * (n + 1) <= left else 0.0
    share = (left - held) / n * (1.0 - SLACK)  # the division's rounding cannot add up past what is left
    return held, max(share, 0.0)


def spent_breakdown(results: list[dict], overhead: list[dict]) -> dict:
    """Actual USD of a run by kind of call: plan, answers, judges, synthesis, and the total."""
    plan = sum((e.get("cost_usd", 0.0) for e in overhead if e.get("node") in PLAN_NODES), 0.0)
    synthesis = sum((e.get("cost_usd", 0.0) for e in overhead if e.get("node") == "synthesize"), 0.0)
    answers = sum((a.get("cost_usd", 0.0) for r in results for a in r.get("attempts") or []), 0.0)
    judges = sum((a.get("judge_cost_usd", 0.0) for r in results for a in r.get("attempts") or []), 0.0)
    return {
        "plan": plan,
        "answers": answers,
        "judges": judges,
        "synthesis": synthesis,
        "total": plan + answers + judges + synthesis,
    }


def branch_share(state, ctx) -> float:
    """This subtask's fixed share of the budget, as decompose set it (else an equal split of the budget)."""
    if state.get("share_usd") is not None:
        return float(state["share_usd"])
    return usable(ctx.budget_usd) / max(state.get("n_subtasks", 1), 1)
