"""The graph's output as OpenAI's chat completion: the answer, tool calls (``finish_reason: "tool_calls"``) or
a ``refusal`` (an answer no model made valid), the token usage, and the graph's own account of the run (the
``fusiongraph`` field: subtasks, results, trace, summary), secrets redacted."""

import json
import time
import uuid

from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.completion_usage import CompletionUsage

from fusiongraph.records import Attempt
from fusiongraph.server.redaction import scrub
from fusiongraph.server.schema import MODEL_ID
from fusiongraph.text import estimate_tokens


def delivered_tokens(out: dict, answer: str) -> int:
    """Output tokens of the answer delivered: the answering call's own count when the reply is one model's
    answer as it made it, the synthesis call's when the synthesiser wrote it, else an estimate of the text."""
    results = out.get("results") or []
    if len(results) == 1 and results[0].get("answer") == answer:
        for a in results[0].get("attempts", []):
            if a.get("model") == results[0].get("answered_by") and a.get("answer") == answer:
                return int(a.get("tokens_out") or 0) or estimate_tokens(answer)
    synthesis = [e for e in out.get("trace") or [] if e.get("node") == "synthesize" and e.get("tokens_out")]
    if synthesis and len(results) > 1:
        return int(synthesis[-1]["tokens_out"])
    return estimate_tokens(answer) if answer else 0


def usage_of(out: dict, prompt_text: str = "", answer: str | None = None) -> CompletionUsage:
    """OpenAI's usage, as a client's cost tracker reads it: the tokens of the messages sent (estimated) and of
    the answer delivered. Every internal call (plans, answers tried, judges, synthesis) and its USD is in the
    ``fusiongraph`` field's ``summary`` instead."""
    answer = out.get("answer", "") or "" if answer is None else answer
    tin = estimate_tokens(prompt_text) if prompt_text else 0
    tout = delivered_tokens(out, answer)
    return CompletionUsage(prompt_tokens=tin, completion_tokens=tout, total_tokens=tin + tout)


def cut_at_stop(answer: str, stop: list[str] | None) -> tuple[str, bool]:
    """The answer up to the first of the `stop` sequences (OpenAI's ``stop``), and whether one was found."""
    cuts = [answer.find(s) for s in stop or [] if s and s in answer]
    return (answer[: min(cuts)], True) if cuts else (answer, False)


def _slim_attempt(a: Attempt) -> dict:
    """An attempt (fusiongraph.records.Attempt) for the response: answer and verdict details cut short."""
    keep = {k: v for k, v in a.items() if k not in ("answer", "verdicts")}
    if a.get("answer") is not None:
        keep["answer"] = a["answer"][:500]
    keep["verdicts"] = [
        {k: v for k, v in vd.items() if k != "detail"} | {"detail": str(vd.get("detail", ""))[:200]}
        for vd in a.get("verdicts", [])
        if isinstance(vd, dict)
    ]
    return keep


def fusiongraph_field(out: dict, ignored: list[str]) -> dict:
    """The graph's output for the response: each SubtaskResult without its guides, class scores, and with
    its answer and attempts cut short."""
    results = [
        {k: v for k, v in r.items() if k not in ("attempts", "guides", "class_scores", "answer")}
        | {"answer": (r.get("answer") or "")[:500], "attempts": [_slim_attempt(a) for a in r.get("attempts", [])]}
        for r in out.get("results") or []
    ]
    field = {
        "verified": (out.get("summary") or {}).get("verified", False),
        "standalone": out.get("standalone"),
        "subtasks": out.get("subtasks", []),
        "summary": out.get("summary", {}),
        "results": results,
        "trace": out.get("trace", []),
    }
    field |= {"refusal": out["refusal"]} if out.get("refusal") else {}
    return field | ({"ignored_params": ignored} if ignored else {})


def openai_tool_calls(out: dict) -> list[dict]:
    """The reply's tool calls in OpenAI's form (arguments as a JSON string)."""
    return [
        {
            "id": tc.get("id") or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": tc["name"], "arguments": json.dumps(tc.get("args") or {}, ensure_ascii=False)},
        }
        for tc in out.get("tool_calls") or []
    ]


def finish_reason(out: dict) -> str:
    """OpenAI's finish_reason: tool_calls, length (the only answering model's reply was cut at max_tokens) or
    stop."""
    if out.get("tool_calls"):
        return "tool_calls"
    reasons = [
        a.get("finish_reason")
        for r in out.get("results") or []
        for a in r.get("attempts", [])
        if a.get("model") == r.get("answered_by")
    ]
    return "length" if "length" in reasons and len(reasons) == 1 else "stop"


def _token_logprob(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def answer_logprobs(out: dict, answer: str, top: int | None = None) -> tuple[dict | None, str | None]:
    """OpenAI's ``choices[0].logprobs`` for the delivered answer (its answering call's tokens, each with up to
    `top` alternatives where the model gave them: the attempt's ``[token, logprob, [[alt, logprob], ...]]``),
    or None and why not. The note (second value) also says when alternatives were asked and none given."""
    results = out.get("results") or []
    if len(results) != 1 or results[0].get("answer") != answer:
        return None, "the answer was written by the synthesiser, not by one model call"
    if results[0].get("cache"):
        return None, "the answer came from the answer cache, not from a model call (the `cache` knob off avoids it)"
    attempt = next((a for a in results[0].get("attempts", []) if a.get("model") == results[0].get("answered_by")), {})
    if not attempt.get("logprobs"):
        return None, f"the answering model {attempt.get('model')!r} returns no token log-probabilities"
    content = [
        _token_logprob(entry[0], entry[1])
        | {"top_logprobs": [_token_logprob(a, alp) for a, alp in (entry[2] if len(entry) > 2 else [])[: top or 0]]}
        for entry in attempt["logprobs"]
    ]
    given = any(len(entry) > 2 and entry[2] for entry in attempt["logprobs"])
    note = (
        f"top_logprobs: {attempt.get('model')!r} gives only each chosen token's log-probability"
        if top and not given
        else None
    )
    return {"content": content, "refusal": None}, note


def delivered_logprobs(out: dict, answer: str, stopped: bool, top: int | None = None) -> tuple[dict | None, str | None]:
    """:func:`answer_logprobs` of the delivered answer: when it was cut at a stop sequence (`stopped`), the
    whole answer's tokens up to the cut (the last may run past it)."""
    lps, note = answer_logprobs(out, (out.get("answer") or "") if stopped else answer, top)
    if lps is not None and stopped:
        kept, text = [], ""
        for tok in lps["content"]:
            if len(text) >= len(answer):
                break
            kept.append(tok)
            text += tok["token"]
        lps["content"] = kept
    return lps, note


def completion_body(
    out: dict,
    ignored: list[str],
    stop: list[str] | None = None,
    prompt_text: str = "",
    logprobs: bool = False,
    top_logprobs: int | None = None,
) -> dict:
    """The non-streamed response: a ChatCompletion with the ``fusiongraph`` field, secrets redacted; the answer
    cut at the first `stop` sequence (finish_reason ``stop``)."""
    calls = openai_tool_calls(out)
    answer, stopped = cut_at_stop(out.get("answer", "") or "", stop)
    lps, note = delivered_logprobs(out, answer, stopped, top_logprobs) if logprobs and not calls else (None, None)
    message = ChatCompletionMessage(
        role="assistant",
        content=None if calls or out.get("refusal") else answer,
        refusal=out.get("refusal"),
        **({"tool_calls": calls} if calls else {}),
    )
    body = ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        object="chat.completion",
        created=int(time.time()),
        model=MODEL_ID,
        system_fingerprint=None,
        usage=usage_of(out, prompt_text, answer),
        choices=[
            Choice(index=0, message=message, logprobs=lps, finish_reason="stop" if stopped else finish_reason(out))
        ],
        fusiongraph=fusiongraph_field(out, ignored) | ({"logprobs_note": note} if note else {}),
    )
    return scrub(body.to_dict())
