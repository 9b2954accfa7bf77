"""A real HTTP server on 127.0.0.1 that speaks the parts of the OpenAI API memagent uses.

Embeddings are deterministic bags of hashed words, so texts sharing words are near each other. Every request
is recorded; failures can be queued (status code, optional Retry-After, or a delay).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

WORD = re.compile(r"[a-z0-9]+")


def fake_embedding(text: str, dim: int) -> np.ndarray:
    """Hashed bag of words, L2-normalised; never the zero vector."""
    vector = np.zeros(dim, dtype=np.float32)
    words = WORD.findall(text.lower()) or ["<empty>"]
    for word in words:
        digest = hashlib.sha256(word.encode()).digest()
        bucket = int.from_bytes(digest[:4], "little") % dim
        vector[bucket] += 1.0 if digest[4] % 2 == 0 else -1.0
        vector[(bucket + 1) % dim] += 0.25
    return vector / np.linalg.norm(vector)


def model_dim(model: str) -> int:
    """fake-embed-384 makes 384 dimensions; any name's trailing number is its dimension."""
    match = re.search(r"(\d+)$", model)
    return int(match.group(1)) if match else 384


@dataclass
class Failure:
    """A scripted failure for the next matching request."""

    status: int = 500
    retry_after: float | None = None
    delay: float = 0.0
    path: str | None = None  # fail only requests whose path ends so (e.g. "/chat/completions")
    body: dict[str, Any] = field(default_factory=lambda: {"error": {"message": "scripted failure"}})


class FakeOpenAI:
    """Start with `start()`, point clients at `.base_url`, read `.requests`."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failures: list[Failure] = []
        self.chat_reply = "I remember."
        # Scripted whole (non-streamed) replies: the queue first, then the handler, then chat_reply. A handler
        # may answer with a whole message (a dict, e.g. with "tool_calls": see tool_call) instead of its text.
        self.chat_replies: list[str] = []
        self.chat_handler: Callable[[dict[str, Any]], str | dict[str, Any]] | None = None
        # The vector for an input text and dimension, in place of fake_embedding (benchmarks/chat_turn.py).
        self.embedding_handler: Callable[[str, int], np.ndarray] | None = None
        self.refuse_formats: set[str] = set()  # response_format types answered with HTTP 400
        self.latency = 0.0  # seconds added to every successful embeddings answer
        self.api_key = "sk-test-secret-key-1234567890"
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    self.close_connection = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append(
                        {"path": self.path, "body": body, "auth": self.headers.get("Authorization", "")}
                    )
                    failure = next(
                        (f for f in fake.failures if f.path is None or self.path.endswith(f.path)), None
                    )
                    if failure is not None:
                        fake.failures.remove(failure)
                if failure is not None:
                    time.sleep(failure.delay)
                    headers = {}
                    if failure.retry_after is not None:
                        headers["Retry-After"] = str(failure.retry_after)
                    self._send(failure.status, failure.body, headers)
                    return
                if self.path.endswith("/embeddings"):
                    time.sleep(fake.latency)
                    self._send(200, fake._embeddings(body))
                elif self.path.endswith("/chat/completions") and body.get("stream"):
                    self._stream(fake._chat_chunks(body))
                elif self.path.endswith("/chat/completions"):
                    kind = (body.get("response_format") or {}).get("type")
                    if kind in fake.refuse_formats:
                        self._send(400, {"error": {"message": f"response_format {kind} is not supported"}})
                    else:
                        self._send(200, fake._chat(body))
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def _stream(self, chunks: list[dict[str, Any]]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                for chunk in chunks:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.failures.clear()
            self.latency = 0.0
            self.chat_replies.clear()
            self.chat_handler = None
            self.embedding_handler = None
            self.refuse_formats = set()

    def embedding_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].endswith("/embeddings")]

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dim = int(body.get("dimensions") or model_dim(body["model"]))
        data = []
        for index, text in enumerate(texts):
            handler = self.embedding_handler
            vector = handler(text, dim) if handler is not None else fake_embedding(text, dim)
            if body.get("encoding_format") == "base64":
                embedding: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode()
            else:
                embedding = vector.tolist()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        return {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)},
        }

    def reply_pieces(self) -> list[str]:
        """The scripted reply split as a model would stream it (word by word)."""
        words = self.chat_reply.split(" ")
        return [word if i == 0 else " " + word for i, word in enumerate(words)]

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    def reply_requests(self) -> list[dict[str, Any]]:
        """The chat requests that asked for a reply to the user (streamed), not learning's (whole JSON)."""
        return [r for r in self.chat_requests() if r["body"].get("stream")]

    def _chat_chunks(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "fake-chat"),
        }
        chunks = [
            {
                **base,
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                ],
            }
        ]
        for piece in self.reply_pieces():
            chunks.append(
                {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            )
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        return chunks

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            scripted = self.chat_replies.pop(0) if self.chat_replies else None
        answer: str | dict[str, Any] | None = scripted
        if answer is None:
            answer = self.chat_handler(body) if self.chat_handler is not None else self.chat_reply
        message = answer if isinstance(answer, dict) else {"role": "assistant", "content": answer}
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake-chat"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }


def tool_call(name: str, arguments: dict[str, Any], call_id: str = "call_1") -> dict[str, Any]:
    """An assistant message calling one tool, as a chat_handler may answer."""
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": function}],
    }
