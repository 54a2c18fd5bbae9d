"""A fast OpenAI-compatible chat server on loopback for speed and load benchmarks.

Answers every chat completion after a fixed delay; structured-output calls (function calling) get a
valid tool call: the decomposer splits the request on " AND ", the judge scores 9/10.

    python benchmarks/fake_openai_server.py --port 8765 --latency-ms 200
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _reply(body: dict) -> dict:
    user = next((m["content"] for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
    if isinstance(user, list):
        user = " ".join(p.get("text", "") for p in user)
    message: dict = {"role": "assistant", "content": f"Answer to: {user[:80]}"}
    tools = body.get("tools") or []
    if tools:
        name = tools[0]["function"]["name"]
        args = (
            {"subtasks": [p.strip() for p in user.split(" AND ")]}
            if name == "Decomposition"
            else {"reason": "fine", "score": 9}
        )
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            ],
        }
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fake",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tools else "stop"}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
    }


class FakeOpenAIServer:
    def __init__(self, port: int = 0, latency_s: float = 0.0):
        self.latency_s = latency_s
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._send({"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                outer.hits += 1
                time.sleep(outer.latency_s)
                self._send(_reply(body))

            def _send(self, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> "FakeOpenAIServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    a = parser.parse_args()
    server = FakeOpenAIServer(a.port, a.latency_ms / 1000)
    print(server.url, flush=True)
    server.httpd.serve_forever()
