"""A small OpenAI-compatible upstream for the integration tests: a real HTTP server on
127.0.0.1 (standard library only, in a thread) that counts its calls and can hold an
answer until the test releases it, stream, fail, cut an answer short or call a tool.

The answer to a chat request is ``"answer #<n> to: <last user text>"`` where ``n`` counts
the chat calls, so a test can tell a cached answer from a fresh one; ``reply`` replaces
it (``reply(text, n)``, e.g. the same answer to every paraphrase of a question).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Upstream:
    """The server's state; ``mode`` is ``"ok"``, ``"error"`` (HTTP 500), ``"length"``
    (finish_reason "length") or ``"tool_calls"``."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls: list[dict[str, Any]] = []
        self.other_calls: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.gate: threading.Event | None = None
        self.reply: Callable[[str, int], str] | None = None
        self._cond = threading.Condition()
        self.url = ""

    @property
    def chat_calls(self) -> int:
        with self._cond:
            return len(self.calls)

    def hold(self) -> threading.Event:
        """Make chat answers wait until the returned event is set."""
        self.gate = threading.Event()
        return self.gate

    def wait_for_calls(self, count: int, timeout: float = 30.0) -> bool:
        """Block until ``count`` chat requests have arrived."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.calls) >= count, timeout)

    def _arrive(self, body: dict[str, Any], headers: dict[str, str]) -> int:
        with self._cond:
            self.calls.append(body)
            self.headers.append(headers)
            self._cond.notify_all()
            return len(self.calls)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content)


def _handler(state: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            state.other_calls.append(f"GET {self.path}")
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, {"object": "list", "data": [{"id": "m1", "object": "model"}]})
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self.path.rstrip("/").endswith("/chat/completions"):
                state.other_calls.append(f"POST {self.path}")
                if self.path.rstrip("/").endswith("/embeddings"):
                    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    data = [
                        {"object": "embedding", "index": i, "embedding": [1.0, float(len(t)), 0.5]}
                        for i, t in enumerate(inputs)
                    ]
                    self._send(200, {"object": "list", "data": data, "model": body["model"]})
                    return
                self._send(404, {"error": {"message": "not found"}})
                return
            n = state._arrive(body, {k.lower(): v for k, v in self.headers.items()})
            if state.gate is not None:
                state.gate.wait(30)
            mode = state.mode
            if mode == "error":
                self._send(500, {"error": {"message": "upstream failed", "type": "server_error"}})
                return
            text = _text(body["messages"][-1]["content"])
            reply = state.reply
            content = f"answer #{n} to: {text}" if reply is None else reply(text, n)
            finish = {"ok": "stop", "length": "length", "tool_calls": "tool_calls"}[mode]
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if mode == "tool_calls":
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"call_{n}",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": '{"q": "x"}'},
                        }
                    ],
                }
            base = {
                "id": f"chatcmpl-up{n}",
                "created": int(time.time()),
                "model": body["model"],
                "system_fingerprint": "fp_test",
            }
            usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
            if body.get("stream"):
                self._stream(base, message, finish, usage, body)
                return
            self._send(
                200,
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
                    ],
                    "usage": usage,
                },
            )

        def _stream(
            self,
            base: dict[str, Any],
            message: dict[str, Any],
            finish: str,
            usage: dict[str, Any],
            body: dict[str, Any],
        ) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()

            def event(payload: Any) -> None:
                data = b"data: " + json.dumps(payload).encode() + b"\n\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            chunk = {**base, "object": "chat.completion.chunk"}
            first = {"role": "assistant", "content": ""}
            event({**chunk, "choices": [{"index": 0, "delta": first, "finish_reason": None}]})
            content = message.get("content") or ""
            pieces = [content[i : i + 7] for i in range(0, len(content), 7)]
            for piece in pieces:
                delta = {"content": piece}
                event({**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            if message.get("tool_calls"):
                calls = [{"index": 0, **message["tool_calls"][0]}]
                delta = {"tool_calls": calls}
                event({**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                event({**chunk, "choices": [], "usage": usage})
            done = b"data: [DONE]\n\n"
            self.wfile.write(f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n")
            self.wfile.flush()

    return Handler


class _Server(ThreadingHTTPServer):
    """The upstream's server: a client that hangs up mid-stream (a stream the test
    cancels, or a client that got what it needed) is not an error of the server's;
    anything else is printed as socketserver does."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


@contextmanager
def running_upstream() -> Iterator[Upstream]:
    """Start the upstream on a free port of 127.0.0.1; ``state.url`` ends in ``/v1``."""
    state = Upstream()
    server = _Server(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        if state.gate is not None:
            state.gate.set()
        server.shutdown()
        server.server_close()
        thread.join()
