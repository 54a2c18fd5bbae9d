"""Faults injected into a real HTTP tier (ChatOpenAI against a loopback server that misbehaves)."""

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fusiongraph.graphs.fusion import graph
from tests.conftest import ctx
from tests.fakes import ScriptedChat


class FaultServer:
    """An OpenAI-compatible endpoint whose next replies are scripted: (status, headers, body, delay)."""

    def __init__(self):
        self.hits = 0
        self.bodies: list[str] = []  # every request body received, as text
        self.reply = (200, {}, "", 0.0)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                server.bodies.append(
                    self.rfile.read(int(self.headers.get("content-length", 0))).decode("utf-8", "replace")
                )
                server.hits += 1
                status, headers, body, delay = server.reply
                time.sleep(delay)
                try:
                    self.send_response(status)
                    for k, v in {"content-type": "application/json", **headers}.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body.encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(content: str) -> str:
    return json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        }
    )


@pytest.fixture
def tier(fusion):
    server = FaultServer()
    strong = ScriptedChat(script=lambda p: "GOOD answer")
    res = fusion(
        {
            "flaky": ({"price_in": 0.1, "price_out": 0.1, "timeout_s": 0.5}, None),
            "strong": ({"price_in": 1.0, "price_out": 4.0}, strong),
        }
    )
    res.roster.specs["flaky"].base_url = server.url
    yield server, res, strong
    server.close()


def run_once():
    out = graph.invoke({"query": "What is the capital of France?"}, context=ctx())
    (result,) = out["results"]
    return {a["model"]: a for a in result["attempts"]}, result


@pytest.mark.parametrize(
    "reply,hits,error",
    [
        ((429, {"retry-after": "0.1"}, '{"error": {"message": "slow down"}}', 0.0), 3, "429|RateLimit"),
        ((500, {}, '{"error": {"message": "boom"}}', 0.0), 3, "500"),
        ((200, {}, completion("late"), 2.0), 3, "[Tt]imed? ?out"),
        ((200, {}, "{this is not json", 0.0), 1, "Error"),
        ((400, {}, '{"error": {"message": "bad request"}}', 0.0), 1, "400"),
    ],
)
def test_each_fault_is_retried_only_if_transient_and_the_run_finishes(tier, reply, hits, error):
    server, res, strong = tier
    server.reply = reply
    attempts, result = run_once()
    assert server.hits == hits  # bounded: RetryPolicy max_attempts=3 for transient errors, else once
    assert re.search(error, attempts["flaky"]["error"])
    assert result["answered_by"] == "strong" and result["answer"] == "GOOD answer"
    rows = {r["model"]: r for r in res.store.outcomes()}
    assert re.search(error, rows["flaky"]["error"]) and rows["strong"]["accepted"]


def test_a_refused_connection_moves_on_at_once(tier):
    server, res, strong = tier
    server.close()
    started = time.perf_counter()
    attempts, result = run_once()
    assert "Connection" in attempts["flaky"]["error"]
    assert result["answered_by"] == "strong"
    assert time.perf_counter() - started < 5


def test_an_empty_answer_is_vetoed_and_escalated(tier):
    server, res, strong = tier
    server.reply = (200, {}, completion(""), 0.0)
    attempts, result = run_once()
    assert attempts["flaky"]["confidence"] == 0.0
    assert attempts["flaky"]["verdicts"][0] == {"judge": "rules", "score": 0.0, "veto": True, "detail": "empty answer"}
    assert result["answered_by"] == "strong"


def test_a_judge_returning_junk_never_accepts(fusion):
    cheap = ScriptedChat(script=lambda p: "GOOD answer")
    fusion({"cheap": ({}, cheap)}, judge=ScriptedChat(script=lambda p: "10/10 would read again"))
    out = graph.invoke({"query": "What is the capital of France?"}, context=ctx(quality_threshold=0.6))
    (result,) = out["results"]
    llm = next(v for v in result["attempts"][0]["verdicts"] if v["judge"] == "llm")
    assert llm["score"] == 0.0 and "junk" in llm["detail"]
    assert result["status"] == "best_effort"
