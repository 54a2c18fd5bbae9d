"""The OpenAI chat request (``POST /v1/chat/completions``) as pydantic models, and its validation into the
graph's input and context.

The messages become LangChain messages and the graph's input (``{"messages": [...], "tools": ...}``): the last
user message is answered, earlier turns are the history the answering models receive (nodes/standalone.py);
``tools`` / ``tool_choice`` / ``parallel_tool_calls`` / ``response_format`` pass through (validated by
fusiongraph.conversation.make_request). Knobs (FusionContext fields) come as top-level fields or in a
``fusiongraph`` object (which wins), except the server-side path knobs; OpenAI parameters the graph does not
use are accepted, ignored and listed in ``fusiongraph.ignored_params``; anything else is a
:class:`RequestError` (a 4xx in OpenAI's error format).
"""

import json
from typing import Annotated, Any, Literal, get_type_hints

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from fusiongraph.context import FusionContext
from fusiongraph.conversation import make_request, split_conversation
from fusiongraph.text import QueryError, clean_query

MODEL_ID = "fusiongraph"
MODEL_CARD = {"id": MODEL_ID, "object": "model", "created": 1735689600, "owned_by": "fusiongraph"}
HTTP_FORBIDDEN_KNOBS = frozenset({"store_dir", "models_path", "taxonomy_path", "discover_local", "privacy_patterns"})
IGNORED_OPENAI_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "seed",
        "user",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "metadata",
        "store",
        "service_tier",
        "reasoning_effort",
        "prompt_cache_key",
        "safety_identifier",
        "verbosity",
        "modalities",
    }
)
# accepted (and ignored) only with a value that asks for nothing (the legacy functions API: use tools)
UNSUPPORTED_PARAMS = ("functions", "function_call", "audio", "prediction")
# passed to the graph (fusiongraph.conversation.make_request validates them)
REQUEST_PARAMS = ("tools", "tool_choice", "parallel_tool_calls", "response_format")
ROLES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}
_KNOB_TYPES = get_type_hints(FusionContext)
_HTTP_KNOBS = sorted(set(_KNOB_TYPES) - HTTP_FORBIDDEN_KNOBS)


class RequestError(Exception):
    """A refused request: the message, param, HTTP status and code of OpenAI's error body."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


def _refuse(message: str, param: str | None, status: int = 400, code: str | None = None) -> PydanticCustomError:
    return PydanticCustomError("request", message, {"param": param, "status": status, "code": code})


class Message(BaseModel):
    model_config = ConfigDict(strict=True)  # other message fields (name, audio, ...) are ignored
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None  # an assistant's calls, in OpenAI's form
    tool_call_id: str | None = None  # a tool message: the call it answers
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _parts(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        for i, part in enumerate(v):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                continue
            if kind == "image_url" and isinstance((part.get("image_url") or {}).get("url"), str):
                continue
            raise PydanticCustomError("content_parts", "not a text or image part", {"part": i})
        return v

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p["text"] for p in self.content if p.get("type") == "text")
        return self.content or ""

    def to_langchain(self, i: int) -> BaseMessage:
        """The LangChain message (RequestError naming the message when it cannot be one)."""
        images = isinstance(self.content, list) and any(p.get("type") == "image_url" for p in self.content)
        if images and self.role != "user":
            raise _refuse(f"messages[{i}]: only user messages may have image parts", f"messages[{i}].content")
        if self.role in ("system", "developer"):
            return SystemMessage(self.text())
        if self.role == "user":
            return HumanMessage(self.content if images else self.text(), **({"name": self.name} if self.name else {}))
        if self.role == "tool":
            if not self.tool_call_id:
                raise _refuse(f"messages[{i}]: a tool message needs tool_call_id", f"messages[{i}].tool_call_id")
            return ToolMessage(self.text(), tool_call_id=self.tool_call_id)
        calls = []
        for j, tc in enumerate(self.tool_calls or []):
            fn = tc.get("function") if isinstance(tc, dict) else None
            try:
                args = json.loads(fn.get("arguments") or "{}") if isinstance(fn, dict) else None
            except (TypeError, ValueError):
                args = None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(args, dict):
                raise _refuse(
                    f"messages[{i}].tool_calls[{j}] must be {{id, type: function, function: {{name, arguments: "
                    f"a JSON object as a string}}}}",
                    f"messages[{i}].tool_calls",
                )
            calls.append({"name": fn["name"], "args": args, "id": tc.get("id") or f"call_{i}_{j}"})
        return AIMessage(self.text(), tool_calls=calls)


def _conversation(messages: list[Message]) -> list[BaseMessage]:
    """The LangChain messages of the request: the last user message is answered, earlier turns are history
    (fusiongraph.conversation.split_conversation, the graph's own rule)."""
    for i, m in enumerate(messages):
        if m.role == "user" and not m.text().strip() and not isinstance(m.content, list):
            raise _refuse(f"messages[{i}].content is empty", f"messages[{i}].content")
    converted = [m.to_langchain(i) for i, m in enumerate(messages)]
    if messages[-1].role not in ("user", "tool"):
        raise _refuse(f"the last message must come from the user or a tool, got role {messages[-1].role!r}", "messages")
    try:
        _, last, _ = split_conversation(converted)
        clean_query(last.text)
    except QueryError as exc:
        raise _refuse(str(exc), "messages") from exc
    return converted


def _model_exists(model: str) -> str:
    if model and model != MODEL_ID:
        raise _refuse(
            f"the model {model!r} does not exist; this server offers {MODEL_ID!r}", "model", 404, "model_not_found"
        )
    return model


_STRICT = ConfigDict(strict=True, extra="forbid")
Knobs = create_model("Knobs", __config__=_STRICT, **{k: (_KNOB_TYPES[k], None) for k in _HTTP_KNOBS})


class BaseChatRequest(BaseModel):
    """The fields every request has; ChatRequest adds the knobs and the accepted-and-ignored parameters."""

    model_config = _STRICT
    model: Annotated[str, Field(min_length=1), AfterValidator(_model_exists)]
    messages: Annotated[list[Message], Field(min_length=1), AfterValidator(lambda v: _conversation(v) and v)]
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: float = Field(1, ge=1, le=1)
    _request: dict = PrivateAttr(default_factory=dict)

    @field_validator("stream_options", mode="before")
    @classmethod
    def _no_options(cls, v: Any) -> Any:
        return v or None

    @field_validator(*UNSUPPORTED_PARAMS, check_fields=False)
    @classmethod
    def _asks_for_nothing(cls, v: Any, info) -> Any:
        if v not in (None, [], {"type": "text"}, "none", "auto"):
            raise _refuse(f"'{info.field_name}' is not supported by the fusiongraph model", info.field_name)
        return v

    @model_validator(mode="after")
    def _request_is_valid(self):
        images = any(
            isinstance(m.content, list) and any(p.get("type") == "image_url" for p in m.content) for m in self.messages
        )
        try:
            self._request = make_request(
                self.tools, self.tool_choice, self.parallel_tool_calls, self.response_format, images=images
            )
        except ValueError as exc:
            param = next((p for p in REQUEST_PARAMS if str(exc).startswith(p)), "messages")
            raise _refuse(str(exc), param) from exc
        return self

    @model_validator(mode="after")
    def _knobs_in_range(self):
        try:
            FusionContext(**self.context)  # range checks (quality_threshold in [0, 1], budget >= 0, ...)
        except ValidationError as exc:
            knob = str(exc.errors()[0]["loc"][0]) if exc.errors() and exc.errors()[0]["loc"] else ""
            raise _refuse(str(exc), self._param_of(knob)) from exc
        except (ValueError, TypeError) as exc:
            raise _refuse(str(exc), "fusiongraph") from exc
        return self

    def _param_of(self, knob: str) -> str:
        """The request's own name of a knob that failed: a top-level field as the client sent it, else the
        knob inside the `fusiongraph` object."""
        if knob == "max_tokens" and "max_completion_tokens" in self.model_fields_set:
            return "max_completion_tokens"
        if knob in type(self).model_fields and knob in self.model_fields_set:
            return knob
        return f"fusiongraph.{knob}" if knob else "fusiongraph"

    @property
    def request(self) -> dict:
        """The validated tools / response_format (fusiongraph.state.RequestSpec)."""
        return self._request

    @property
    def graph_input(self) -> dict:
        """The graph's input: the conversation as LangChain messages and the request's fields."""
        fields = {k: getattr(self, k) for k in REQUEST_PARAMS if getattr(self, k) is not None}
        return {"messages": _conversation(self.messages), **fields}

    @property
    def last_text(self) -> str:
        return split_conversation(_conversation(self.messages))[1].text

    @property
    def prompt_text(self) -> str:
        """The text of every message sent (for the usage's prompt tokens)."""
        return "\n".join(m.text for m in _conversation(self.messages))

    @property
    def wants_logprobs(self) -> bool:
        return bool(getattr(self, "logprobs", None))

    @property
    def stops(self) -> list[str] | None:
        """OpenAI's ``stop``: the sequences the answer is cut at (None: not asked)."""
        stop = getattr(self, "stop", None)
        return None if stop is None else [stop] if isinstance(stop, str) else list(stop)

    @field_validator("top_logprobs", check_fields=False)
    @classmethod
    def _top_logprobs_in_range(cls, top: Any) -> Any:
        """Checked before the knobs (top_logprobs is also the knob of that name), with OpenAI's message."""
        if top is not None and not 0 <= top <= 20:
            raise _refuse("'top_logprobs' must be between 0 and 20", "top_logprobs")
        return top

    @model_validator(mode="after")
    def _top_logprobs_needs_logprobs(self):
        top = getattr(self, "top_logprobs", None)
        if top and not getattr(self, "logprobs", None):
            raise _refuse("'top_logprobs' needs 'logprobs': true", "top_logprobs")
        return self

    @model_validator(mode="after")
    def _at_most_four_stops(self):
        if len(self.stops or []) > 4 or any(not s for s in self.stops or []):
            raise _refuse("'stop' takes at most 4 non-empty sequences", "stop")
        return self

    @property
    def context(self) -> dict:
        top = {k: getattr(self, k) for k in self.model_fields_set if k in _KNOB_TYPES}
        if self.max_completion_tokens is not None:
            top["max_tokens"] = self.max_completion_tokens
        if getattr(self, "logprobs", None):
            top["logprobs"] = True
        return {k: v for k, v in top.items() if v is not None} | self.fusiongraph.model_dump(exclude_unset=True)

    @property
    def ignored(self) -> list[str]:
        return sorted(self.model_fields_set & (IGNORED_OPENAI_PARAMS | set(UNSUPPORTED_PARAMS)))

    @property
    def structured(self) -> bool:
        """Tools or a JSON format: no draft is streamed live (the reply is checked whole first)."""
        return bool(self.request.get("requires"))


ChatRequest = create_model(
    "ChatRequest",
    __base__=BaseChatRequest,
    **{k: (_KNOB_TYPES[k], None) for k in _HTTP_KNOBS if k not in ("max_tokens", "logprobs", "top_logprobs")},
    max_tokens=(int | None, None),
    max_completion_tokens=(int | None, None),
    stop=(str | list[str] | None, None),
    logprobs=(bool | None, None),
    top_logprobs=(int | None, None),
    **{p: (Any, None) for p in sorted(IGNORED_OPENAI_PARAMS) + list(UNSUPPORTED_PARAMS) + list(REQUEST_PARAMS)},
    fusiongraph=(Knobs, Field(default_factory=Knobs)),
)

_FIXED_MESSAGES = {
    None: "the request body must be a JSON object",
    "model": "'model' is required: use 'fusiongraph'",
    "messages": "'messages' must be a non-empty list of {role, content} objects",
    "n": "only n=1 is supported",
    "stream": "'stream' must be a boolean",
    "stream_options": "'stream_options' must be an object",
    "fusiongraph": "'fusiongraph' must be an object of knobs",
}


def _request_error(exc: ValidationError) -> RequestError:
    """The first validation error as an OpenAI error (message, param, status, code)."""
    e = exc.errors(include_url=False)[0]
    loc, kind, ctx = e["loc"], e["type"], e.get("ctx") or {}
    if kind == "request":
        return RequestError(e["msg"], ctx["param"], ctx["status"], ctx["code"])
    param = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or None
    name, got = str(loc[-1]) if loc else "", type(e["input"]).__name__
    if kind == "extra_forbidden" and name in HTTP_FORBIDDEN_KNOBS:
        return RequestError(
            f"knob {name!r} is a server-side setting and cannot be set per request", name, code="forbidden_knob"
        )
    if kind == "extra_forbidden":
        what = "unknown knob" if len(loc) > 1 else "unknown parameter or knob"
        return RequestError(f"{what} {name!r}; knobs: {_HTTP_KNOBS}", param, code="unknown_parameter")
    if name in _KNOB_TYPES or name == "max_completion_tokens":
        knob = "max_tokens" if name == "max_completion_tokens" else name
        return RequestError(
            f"knob {knob!r} must be of type {_KNOB_TYPES[knob].__name__}, got {got}", knob, code="invalid_type"
        )
    if param in _FIXED_MESSAGES:
        return RequestError(_FIXED_MESSAGES[param], param)
    if kind == "content_parts":
        return RequestError(
            f"{param}[{ctx['part']}]: a part must be {{'type': 'text', 'text': ...}} or "
            f"{{'type': 'image_url', 'image_url': {{'url': ...}}}}",
            param,
        )
    if name == "role":
        role = None if kind == "missing" else e["input"]
        return RequestError(f"{param} must be one of {sorted(ROLES)}, got {role!r}", param)
    if "content" in loc:
        upto = loc[: loc.index("content") + 1]
        param = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in upto).lstrip(".")
        return RequestError(f"{param} must be a string or a list of text / image parts, got {got}", param)
    if name in ("tool_calls", "tool_call_id", "name"):
        return RequestError(f"{param} has the wrong type ({got})", param)
    return RequestError(f"{param} must be an object with 'role' and 'content'", "messages")


def parse_request(body: Any) -> BaseChatRequest:
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as exc:
        raise _request_error(exc) from None


def build_conversation(messages: Any) -> list[BaseMessage]:
    """The graph's messages for a list of OpenAI messages (RequestError if they cannot make a conversation)."""
    return parse_request({"model": MODEL_ID, "messages": messages}).graph_input["messages"]
