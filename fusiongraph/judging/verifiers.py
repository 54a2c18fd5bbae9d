"""Verifiers: cheap, class-specific checks of an answer, used by the rules judge (:mod:`fusiongraph.judging.base`).

A verifier is ``function(subtask, answer) -> Check | None``: ``None`` when it does not apply to this
subtask (no JSON was asked for, no Python code was given), else a score in [0, 1] with the reason. A
``veto`` makes the whole confidence 0 (an exact check that fails: a wrong sum, JSON that does not parse,
Python that does not parse); ``exact`` marks a check that decides: against a computed truth (plain
arithmetic: a pass is accepted whatever the soft judges say) or a failed parse. Each task class of the taxonomy names its verifiers
(``verifiers:`` in fusiongraph/defaults/taxonomy.yaml); :data:`VERIFIERS` is the registry of names.

The arithmetic check evaluates the subtask with :func:`safe_eval`, an ``ast`` walk that allows only
numbers, ``+ - * / // % **`` (bounded exponent) and parentheses: never ``eval``.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
from dataclasses import dataclass
from typing import Callable

from fusiongraph.text import SENTENCE_BREAK


@dataclass
class Check:
    score: float
    reason: str
    veto: bool = False
    exact: bool = False


Verifier = Callable[[str, str], "Check | None"]

# ---------------------------------------------------------------------------------------------- arithmetic

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 64
MAX_INT_BITS = 4096

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class UnsafeExpression(ValueError):
    """Not plain arithmetic, or too large to evaluate."""


def safe_eval(expression: str) -> int | float:
    """Evaluate plain arithmetic: numbers, + - * / // % ** (exponent at most 64) and parentheses.

    Anything else (names, calls, attributes, strings, comparisons...) raises :class:`UnsafeExpression`,
    as do results too large to be an answer; division by zero raises ``ZeroDivisionError``.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise UnsafeExpression("expression too long")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise UnsafeExpression(f"not an expression: {exc.msg}") from None
    return _walk(tree.body)


def _check_size(value):
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise UnsafeExpression("result too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise UnsafeExpression("result is not finite")
    return value


def _walk(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _check_size(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_walk(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _walk(node.left), _walk(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                raise UnsafeExpression(f"exponent over {MAX_EXPONENT}")
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and right > 0
                and left.bit_length() * right > MAX_INT_BITS
            ):
                raise UnsafeExpression("result too large")
            if left == 0 and right < 0:
                raise ZeroDivisionError("0 to a negative power")
        try:
            value = _BINOPS[type(node.op)](left, right)
        except OverflowError:
            raise UnsafeExpression("result too large") from None
        if isinstance(value, complex):
            raise UnsafeExpression("complex result")
        return _check_size(value)
    raise UnsafeExpression(f"{type(node).__name__} is not plain arithmetic")


_NUMBER = r"\d+(?:\.\d+)?"
_WORDS = [  # spelled-out operators, longest first
    (r"\bmultiplied\s+by\b", "*"),
    (r"\bdivided\s+by\b", "/"),
    (r"\bto\s+the\s+power\s+of\b", "**"),
    (r"\braised\s+to\b", "**"),
    (r"\btimes\b", "*"),
    (r"\bplus\b", "+"),
    (r"\bminus\b", "-"),
    (r"\bmodulo\b|\bmod\b", "%"),
    (r"\bsquared\b", "**2"),
    (r"\bcubed\b", "**3"),
    (r"[×✕]", "*"),
    (r"[÷]", "/"),
    (r"[−–]", "-"),
    (r"\^", "**"),
    (r"(?<=\d)\s*x\s*(?=\d)", "*"),  # 3 x 4
]
_PERCENT_OF = re.compile(rf"({_NUMBER})\s*%\s*of\s+({_NUMBER})", re.IGNORECASE)
_LEAD = re.compile(
    r"^\s*((please|can\s+you|could\s+you)\s+)?((what\s+is|what's|whats|compute|calculate|evaluate|work\s+out|"
    r"how\s+much\s+is|find|give\s+me|tell\s+me|what\s+do\s+you\s+get\s+(if|when)\s+you)\b"
    r"(\s+the\s+(value|result)\s+of\b)?)?[\s:]*",
    re.IGNORECASE,
)
_N = r"-?\d+(?:\.\d+)?"


def _ordered_difference(a: str, b: str) -> str:
    """ "The difference between 8 and 50" is 42 either way round."""
    return f"({a} - {b})" if float(a) >= float(b) else f"({b} - {a})"


# whole phrasings of one operation on two numbers ("the sum of 34 and 58", "add 12 and 30", "subtract 5 from 20")
_PHRASES = [
    (rf"(?:the\s+)?sum\s+of\s+({_N})\s+and\s+({_N})", lambda a, b: f"({a} + {b})"),
    (rf"add\s+({_N})\s+(?:and|to|plus)\s+({_N})", lambda a, b: f"({a} + {b})"),
    (rf"(?:the\s+)?product\s+of\s+({_N})\s+and\s+({_N})", lambda a, b: f"({a} * {b})"),
    (rf"multiply\s+({_N})\s+(?:by|and|with)\s+({_N})", lambda a, b: f"({a} * {b})"),
    (rf"(?:the\s+)?difference\s+between\s+({_N})\s+and\s+({_N})", _ordered_difference),
    (rf"subtract\s+({_N})\s+from\s+({_N})", lambda a, b: f"({b} - {a})"),
    (rf"take\s+({_N})\s+(?:away\s+)?from\s+({_N})", lambda a, b: f"({b} - {a})"),
    (rf"divide\s+({_N})\s+by\s+({_N})", lambda a, b: f"({a} / {b})"),
    (rf"(?:the\s+)?quotient\s+of\s+({_N})\s+(?:and|by|divided\s+by)\s+({_N})", lambda a, b: f"({a} / {b})"),
]
_PHRASES = [(re.compile(rf"^{pattern}$", re.IGNORECASE), build) for pattern, build in _PHRASES]
_TRAIL = re.compile(r"[\s?.!=]*$")
# a question tag after the arithmetic: "7 multiplied by 11 equals what?", "Take 17 away from 74. What is left?"
_TAG = re.compile(
    r"(?:\s*(?:=|equals?|is|makes|gives)\s*(?:what|how\s+much|\?)"
    r"|\s*[.,;:]\s*(?:what|how\s+much)\s+(?:is|do\s+you\s+get|does\s+(?:it|that)\s+(?:make|give|come\s+to))"
    r"(?:\s+(?:left|(?:the|your)\s+(?:answer|result|total)))?)[\s?.!]*$",
    re.IGNORECASE,
)
_ARITH_CHARS = re.compile(r"^[\d\s.+\-*/%()]+$")


def arithmetic_expression(subtask: str) -> str | None:
    """The subtask as a plain arithmetic expression ("What is 17 times 23?" -> "17 * 23"), or None when
    it is anything more (a word problem, an equation, units): only then is an exact check sound."""
    text = _TRAIL.sub("", _TAG.sub("", _LEAD.sub("", subtask.strip(), count=1)))
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,234 -> 1234
    text = " ".join(text.split())
    for pattern, build in _PHRASES:
        if m := pattern.match(text):
            text = build(*m.groups())
            break
    text = _PERCENT_OF.sub(r"(\1 / 100 * \2)", text)
    for pattern, op in _WORDS:
        text = re.sub(pattern, f" {op} ", text, flags=re.IGNORECASE)
    text = " ".join(text.split())
    if (
        not text
        or not _ARITH_CHARS.match(text)
        or not re.search(r"\d", text)
        or not re.search(r"\d\s*(\*\*|//|[-+*/%])\s*[\d(]|\)\s*(\*\*|//|[-+*/%])", text)
    ):
        return None
    return text


_ANSWER_NUMBER = re.compile(
    r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", re.IGNORECASE
)


def answer_numbers(answer: str) -> list[tuple[float, float]]:
    """Numbers in an answer, in order, each with its rounding tolerance (half a unit of its last digit)."""
    out = []
    for m in _ANSWER_NUMBER.finditer(answer.replace("\u2212", "-")):
        raw = m.group(0).replace(",", "").lower()
        try:
            value = float(raw)
        except ValueError:
            continue
        mantissa, _, exponent = raw.partition("e")
        decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
        scale = int(exponent) if exponent else 0
        tolerance = 0.5 * 10.0 ** (scale - decimals) if (decimals or scale) else 0.0
        out.append((value, tolerance))
    return out


def _matches(expected: float, value: float, tolerance: float) -> bool:
    """Equal, or a rounded answer (10 / 3 = 3.33) that is the expected value at its own precision."""
    return math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-9) or abs(value - expected) <= tolerance * (1 + 1e-9)


def check_arithmetic(subtask: str, answer: str) -> Check | None:
    """Plain arithmetic: the answer's final number must equal the safely evaluated expression. The check
    decides: a match is an exact pass (it overrides the soft judges), anything else an exact veto."""
    expression = arithmetic_expression(subtask)
    if expression is None:
        return None
    try:
        expected = safe_eval(expression)
    except (UnsafeExpression, ZeroDivisionError):
        return None
    numbers = answer_numbers(answer)
    if not numbers:
        return None  # no number at all: the numeric check reports it
    shown = f"{expected:.6g}" if isinstance(expected, float) else str(expected)
    final, tolerance = numbers[-1]
    if _matches(float(expected), final, tolerance):
        return Check(1.0, f"exact: {expression} = {shown}", exact=True)
    return Check(
        0.0,
        f"exact check failed: {expression} = {shown}, the answer's final number is {final:g}",
        veto=True,
        exact=True,
    )


_WANTS_NUMBER = re.compile(r"^(what is|compute|calculate|how (many|much)|solve)\b|\d\s*[-+*/x^]\s*\d", re.IGNORECASE)


def check_numeric(subtask: str, answer: str) -> Check | None:
    """A calculation wants a number in the answer."""
    if not _WANTS_NUMBER.search(subtask):
        return None
    if re.search(r"\d", answer):
        return Check(1.0, "a number is given")
    return Check(0.5, "a number was expected, none given")


# ---------------------------------------------------------------------------------------------- answers

STOP = frozenset(
    "a an the is are was were be been of in on at to for by with and or it its this that these those as from "
    "which who what when where how answer yes no there their they he she his her i you we our your my me "
    "called known named also has have had than then so not".split()
)


def new_words(task: str, answer: str) -> set[str]:
    """The content words of the answer's first sentence that the task does not contain: what it names
    ("The capital of France is Paris." to "What is the capital of France?" -> {"paris"})."""
    from fusiongraph.text import normalise

    first = SENTENCE_BREAK.split((answer or "").strip(), maxsplit=1)[0]
    asked = set(normalise(task).split())
    return {w for w in normalise(first).split() if w not in STOP and w not in asked}


# ---------------------------------------------------------------------------------------------- JSON

WANTS_JSON = re.compile(r"\bjson\b", re.IGNORECASE)


def strip_fence(text: str) -> str:
    return re.sub(r"^```[\w+-]*\s*|\s*```$", "", text.strip())


def check_json(subtask: str, answer: str) -> Check | None:
    """Extraction into JSON: when the subtask asks for JSON, the answer must parse (a fenced block is fine)."""
    if not WANTS_JSON.search(subtask):
        return None
    try:
        json.loads(strip_fence(answer))
    except ValueError as exc:
        return Check(
            0.0, f"JSON requested, answer is not valid JSON ({getattr(exc, 'msg', exc)})", veto=True, exact=True
        )
    return Check(1.0, "valid JSON")


# ---------------------------------------------------------------------------------------------- code

_WANTS_CODE = re.compile(r"\b(write|implement|code|function|script|program|one-liner)\b", re.IGNORECASE)
_CODE_SHAPE = re.compile(r"```|\bdef |\bfunction\b|\breturn\b|;\s*$|=>|\bclass |#include|\bimport ", re.MULTILINE)
_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"python", "py", "python3"}
_PYTHON_SHAPE = re.compile(r"^\s*(def |class |import |from \S+ import |async def )", re.MULTILINE)
_OTHER_LANGUAGES = re.compile(
    r"\b(javascript|typescript|java|c\+\+|c#|rust|go(lang)?|ruby|php|bash|shell|sql|"
    r"swift|kotlin|haskell|perl|scala|in c)\b",
    re.IGNORECASE,
)


def code_blocks(answer: str) -> list[tuple[str, str]]:
    """(language tag, code) of each fenced block; without fences, the answer from its first line that
    looks like Python (def, class, import) is one untagged block."""
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(answer)]
    if not blocks:
        m = _PYTHON_SHAPE.search(answer)
        if m:
            blocks = [("", answer[m.start() :])]
    return blocks


def _is_python(tag: str, code: str, subtask: str) -> bool:
    if tag in _PYTHON_TAGS:
        return True
    if tag:
        return False
    wants_python = re.search(r"\bpython\b", subtask, re.IGNORECASE) is not None
    return wants_python or (not _OTHER_LANGUAGES.search(subtask) and bool(_PYTHON_SHAPE.search(code)))


def _without_prompts(code: str) -> str:
    """Doctest / REPL transcripts (>>> and ... prompts) keep only their input lines."""
    lines = code.splitlines()
    if not any(line.lstrip().startswith(">>>") for line in lines):
        return code
    return "\n".join(line.lstrip()[4:] for line in lines if line.lstrip()[:3] in (">>>", "..."))


def python_parses(code: str, fenced: bool) -> SyntaxError | None:
    """None when the code parses. Unfenced code may be followed by prose: a prefix that ends before a
    non-indented line and parses counts."""
    code = _without_prompts(code)
    try:
        ast.parse(code)
        return None
    except SyntaxError as exc:
        error = exc
    if not fenced:
        lines = code.splitlines()
        for end in range(len(lines) - 1, 0, -1):
            if lines[end] and not lines[end][0].isspace():
                try:
                    ast.parse("\n".join(lines[:end]))
                    return None
                except SyntaxError:
                    continue
    return error


def check_code(subtask: str, answer: str) -> Check | None:
    """Code: some code when code was asked for, and every Python snippet parses (``ast.parse``)."""
    fenced = "```" in answer
    python = [code for tag, code in code_blocks(answer) if _is_python(tag, code, subtask)]
    for code in python:
        error = python_parses(code, fenced)
        if error is not None:
            return Check(
                0.0, f"the Python code does not parse: {error.msg} (line {error.lineno})", veto=True, exact=True
            )
    if python:
        return Check(1.0, f"{len(python)} Python snippet(s) parse")
    if _WANTS_CODE.search(subtask) and not _CODE_SHAPE.search(answer):
        return Check(0.5, "code was requested, none found")
    return None


# ---------------------------------------------------------------------------------------------- registry

VERIFIERS: dict[str, Verifier] = {
    "numeric": check_numeric,
    "arithmetic": check_arithmetic,
    "json": check_json,
    "code": check_code,
}

# The verifiers of a class the taxonomy file does not configure (a class name from fusiongraph/defaults/taxonomy.yaml).
DEFAULT_CLASS_VERIFIERS: dict[str, list[str]] = {
    "math": ["numeric", "arithmetic"],
    "code": ["code"],
    "extraction": ["json"],
    "classification": ["json"],
}


def for_class(task_class: str | None) -> list[str]:
    return list(DEFAULT_CLASS_VERIFIERS.get(task_class or "", []))


def run_verifiers(names: list[str], subtask: str, answer: str) -> list[tuple[str, Check]]:
    """The checks that apply, as (verifier name, check)."""
    out = []
    for name in names:
        check = VERIFIERS[name](subtask, answer)
        if check is not None:
            out.append((name, check))
    return out


# ------------------------------------------------------------------------- a request's tools and JSON output
# Output verifiers check the reply message against what the request asked for (its tools, tool_choice,
# parallel_tool_calls and response_format: a fusiongraph.state.RequestSpec). Each is
# ``function(request, message) -> Check | None`` (None: the request asks nothing of this kind); the rules
# judge runs every one, and a veto (an invalid tool call, JSON that does not parse or validate) makes the
# cascade escalate. The same checks decide whether the final answer is returned or refused.

OutputVerifier = Callable[[dict, object], "Check | None"]


def _schema_errors(schema: dict, value) -> list[str]:
    """Why `value` does not validate against the JSON schema (the first few errors, with their paths)."""
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"[:160] for e in errors[:3]]


def offered_tools(request: dict | None) -> dict[str, dict]:
    """The offered function tools by name (none when tool_choice is "none")."""
    if not request or not request.get("tools") or request.get("tool_choice") == "none":
        return {}
    return {t["function"]["name"]: t["function"] for t in request["tools"] if t.get("type", "function") == "function"}


def forced_tool(request: dict | None) -> str | None:
    """The tool the request's tool_choice names, if it names one."""
    choice = (request or {}).get("tool_choice")
    return choice["function"]["name"] if isinstance(choice, dict) else None


def check_tool_calls(request: dict, message) -> Check | None:
    """A tool call names an offered tool (the one tool_choice names, if any) and its arguments validate
    against that tool's JSON schema; "required" or a named tool_choice wants a call, not text."""
    offered = offered_tools(request)
    calls = list(getattr(message, "tool_calls", None) or [])
    invalid = list(getattr(message, "invalid_tool_calls", None) or [])
    if not offered:
        if calls or invalid:
            return Check(0.0, "the answer calls a tool, but no tools were offered", veto=True)
        return None
    if invalid:
        bad = invalid[0]
        return Check(0.0, f"tool call {bad.get('name')!r}: the arguments are not JSON ({bad.get('error')})", veto=True)
    forced = forced_tool(request)
    if not calls:
        if forced or request.get("tool_choice") == "required":
            return Check(0.0, f"a call of {forced or 'a tool'} was required, the answer is text", veto=True)
        return None  # tool_choice "auto": a text answer is fine
    if request.get("parallel_tool_calls") is False and len(calls) > 1:
        return Check(0.0, f"{len(calls)} tool calls, but parallel_tool_calls is false", veto=True)
    for call in calls:
        name = call.get("name")
        if name not in offered:
            return Check(0.0, f"tool call names {name!r}, which was not offered ({sorted(offered)})", veto=True)
        if forced and name != forced:
            return Check(0.0, f"tool call names {name!r}, but tool_choice asks for {forced!r}", veto=True)
        errors = _schema_errors(offered[name].get("parameters") or {"type": "object"}, call.get("args"))
        if errors:
            return Check(0.0, f"tool call {name!r}: the arguments do not validate: {'; '.join(errors)}", veto=True)
    return Check(1.0, f"{len(calls)} valid tool call(s): {', '.join(c['name'] for c in calls)}")


def response_schema(request: dict | None) -> dict | None:
    """The JSON schema a json_schema response_format asks for."""
    fmt = (request or {}).get("response_format") or {}
    return (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None


def check_response_format(request: dict, message) -> Check | None:
    """response_format json_object: the answer is a JSON object; json_schema: and it validates against the
    schema. The answer must be JSON as it stands (no code fence)."""
    kind = ((request or {}).get("response_format") or {}).get("type")
    if kind not in ("json_object", "json_schema") or getattr(message, "tool_calls", None):
        return None
    text = (getattr(message, "text", "") or "").strip()
    try:
        value = json.loads(text)
    except ValueError as exc:
        return Check(0.0, f"{kind} was requested; the answer is not valid JSON ({getattr(exc, 'msg', exc)})", veto=True)
    schema = response_schema(request)
    if schema is None:
        if not isinstance(value, dict):
            return Check(0.0, f"json_object was requested; the answer is JSON {type(value).__name__}", veto=True)
        return Check(1.0, "a valid JSON object")
    errors = _schema_errors(schema, value)
    if errors:
        return Check(0.0, f"the JSON does not validate against the schema: {'; '.join(errors)}", veto=True)
    return Check(1.0, "JSON valid against the schema")


OUTPUT_VERIFIERS: dict[str, OutputVerifier] = {
    "tool_calls": check_tool_calls,
    "response_format": check_response_format,
}


def check_output(request: dict | None, message) -> list[tuple[str, Check]]:
    """The output checks that apply to this reply, as (verifier name, check)."""
    if not request:
        return []
    out = []
    for name, verifier in OUTPUT_VERIFIERS.items():
        check = verifier(request, message)
        if check is not None:
            out.append((name, check))
    return out


def check_schema(schema, what: str) -> None:
    """ValueError naming `what` when `schema` is not a valid JSON schema (a request's tool or format)."""
    import jsonschema

    if not isinstance(schema, dict):
        raise ValueError(f"{what} must be a JSON schema object")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"{what} is not a valid JSON schema: {exc.message}") from None


# ------------------------------------------------------------------------------------- after a tool result

TOOL_LOOP = "tool loop"  # the reason's prefix: an answer that repeats the call just answered


def answered_calls(messages: list) -> tuple[list[dict], list[str]]:
    """When the conversation ends with tool results: the calls they answer and the results' texts."""
    results: list[str] = []
    for m in reversed(messages or []):
        if type(m).__name__ == "ToolMessage":
            results.insert(0, str(m.content))
            continue
        calls = list(getattr(m, "tool_calls", None) or []) if results else []
        return calls, results
    return [], results


def repeats_call(messages: list, message) -> str | None:
    """After a tool result, a reply that calls the same tool with the same arguments again, or restates the
    call as text instead of using its result: why (TOOL_LOOP ...), else None."""
    calls, results = answered_calls(messages)
    if not calls:
        return None
    done = {(c["name"], json.dumps(c.get("args") or {}, sort_keys=True)) for c in calls}
    for c in getattr(message, "tool_calls", None) or []:
        if (c["name"], json.dumps(c.get("args") or {}, sort_keys=True)) in done:
            return f"{TOOL_LOOP}: calls {c['name']} again with the arguments it just got a result for"
    text = str(getattr(message, "content", "") or "")
    # a word of the result that the call itself holds (a result that echoes the city asked for) is no sign of use
    said = {
        w
        for c in calls
        for w in re.findall(r"[^\W_]{3,}", f"{c['name']} {json.dumps(c.get('args'), ensure_ascii=False)}".lower())
    }
    used = any(w in text.lower() for r in results for w in re.findall(r"[^\W_]{3,}", r.lower()) if w not in said)
    for c in calls:
        named = c["name"] in text
        args = [str(v) for v in (c.get("args") or {}).values()]
        if named and (not args or all(a in text for a in args)) and not used:
            return f"{TOOL_LOOP}: restates the call of {c['name']} instead of using its result"
    return None


def tool_result_answer(messages: list) -> str | None:
    """An answer built from the tool results themselves, when no model used them."""
    calls, results = answered_calls(messages)
    if not results:
        return None
    names = [c["name"] for c in calls] or ["the tool"]
    return "\n".join(f"{names[min(i, len(names) - 1)]} returned: {r}" for i, r in enumerate(results))
