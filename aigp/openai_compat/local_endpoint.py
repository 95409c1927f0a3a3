"""A small OpenAI-compatible HTTP server for the built-in teacher and judge (and anything else callable).

It serves ``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions`` with the request
and response shapes vLLM uses (``choices[].message.content`` / ``choices[].text``, ``finish_reason``,
``usage``), so :class:`aigp.openai_compat.client.OpenAICompatibleClient` talks to it exactly as it talks to vLLM or
KServe. The embedded defaults run behind it in tests and demos; a production teacher is a real endpoint.

Standard library only (``http.server``), bound to loopback by default, one thread per request.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aigp.llm.prompt import approx_tokens


@dataclass(frozen=True)
class GenerationParams:
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 1024
    n: int = 1
    seed: int | None = None


# A backend turns chat messages into n completions.
Backend = Callable[[list[dict[str, str]], GenerationParams], list[str]]


class Overloaded(RuntimeError):
    """Raised by a backend to answer 503 (the client retries)."""


class _BadRequest(ValueError):
    pass


class _UnknownModel(LookupError):
    pass


def chatml_to_messages(prompt: str) -> list[dict[str, str]]:
    """ChatML text (as a /completions client renders chat) back to messages; plain text is one user turn."""
    turns = re.findall(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>", prompt, flags=re.DOTALL)
    if not turns:
        return [{"role": "user", "content": prompt}]
    return [{"role": role, "content": content} for role, content in turns]


class LocalOpenAIServer:
    """``with LocalOpenAIServer({"model-name": backend}) as server: server.base_url``."""

    def __init__(self, backends: Mapping[str, Backend], *, host: str = "127.0.0.1", port: int = 0):
        if not backends:
            raise ValueError("at least one backend (model name -> callable) is needed")
        self.backends = dict(backends)
        self.requests = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet: tests and demos print their own progress
                return

            def do_GET(self) -> None:
                if self.path.rstrip("/") in ("/v1/models", "/models"):
                    data = [{"id": name, "object": "model", "owned_by": "aigp", "created": 0}
                            for name in server.backends]
                    self._send(200, {"object": "list", "data": data})
                elif self.path.rstrip("/") in ("/health", "/v1/health"):
                    self._send(200, {"status": "ok"})
                else:
                    self._send(404, _error(f"no route GET {self.path}", "not_found"))

            def do_POST(self) -> None:
                route = self.path.rstrip("/")
                with server._lock:
                    server.requests += 1
                try:
                    body = self._body()
                    if route in ("/v1/chat/completions", "/chat/completions"):
                        self._send(200, server.chat(body))
                    elif route in ("/v1/completions", "/completions"):
                        self._send(200, server.completion(body))
                    else:
                        self._send(404, _error(f"no route POST {self.path}", "not_found"))
                except _BadRequest as exc:
                    self._send(400, _error(str(exc), "invalid_request_error"))
                except _UnknownModel as exc:
                    self._send(404, _error(str(exc), "model_not_found"))
                except Overloaded as exc:
                    self._send(503, _error(str(exc) or "overloaded", "server_overloaded"), {"Retry-After": "0"})
                except Exception as exc:
                    self._send(500, _error(f"{type(exc).__name__}: {exc}", "internal_error"))

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError as exc:
                    raise _BadRequest(f"request body is not JSON: {exc.msg} at position {exc.pos}") from None
                if not isinstance(body, dict):
                    raise _BadRequest("request body must be a JSON object")
                return body

            def _send(self, status: int, payload: dict[str, Any], headers: Mapping[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self._host = host
        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}/v1"

    def start(self) -> LocalOpenAIServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="aigp-local-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------------
    def _generate(self, body: dict[str, Any], messages: list[dict[str, str]]) -> tuple[str, list[tuple[str, str]], int]:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _BadRequest("'model' is required")
        if model not in self.backends:
            raise _UnknownModel(f"model {model!r} is not served here; served: {sorted(self.backends)}")
        try:
            params = GenerationParams(
                temperature=float(body.get("temperature", 0.7)), top_p=float(body.get("top_p", 1.0)),
                max_tokens=int(body.get("max_tokens") or 1024), n=int(body.get("n") or 1),
                seed=None if body.get("seed") is None else int(body["seed"]),
            )
        except (TypeError, ValueError) as exc:
            raise _BadRequest(f"bad sampling parameter: {exc}") from None
        if params.n < 1 or params.n > 64 or params.max_tokens < 1:
            raise _BadRequest(f"n={params.n} must be in 1..64 and max_tokens={params.max_tokens} >= 1")
        texts = self.backends[model](messages, params)
        choices = []
        for text in texts:
            finish = "stop"
            if approx_tokens(text) > params.max_tokens:  # emulate a length cut as vLLM reports it
                keep = max(1, int(len(text) * params.max_tokens / approx_tokens(text)))
                text, finish = text[:keep], "length"
            choices.append((text, finish))
        prompt_tokens = sum(approx_tokens(m.get("content", "")) for m in messages)
        return model, choices, prompt_tokens

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("content"), str) and isinstance(m.get("role"), str)
                for m in messages):
            raise _BadRequest("'messages' must be a non-empty list of {role, content} objects")
        model, choices, prompt_tokens = self._generate(body, messages)
        return _envelope("chatcmpl", "chat.completion", model, prompt_tokens, [
            {"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
             "finish_reason": finish, "stop_reason": None} for i, (text, finish) in enumerate(choices)])

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _BadRequest("'prompt' must be a non-empty string")
        model, choices, prompt_tokens = self._generate(body, chatml_to_messages(prompt))
        return _envelope("cmpl", "text_completion", model, prompt_tokens, [
            {"index": i, "text": text, "logprobs": None, "finish_reason": finish, "stop_reason": None}
            for i, (text, finish) in enumerate(choices)])


def _envelope(prefix: str, kind: str, model: str, prompt_tokens: int, choices: list[dict[str, Any]]) -> dict[str, Any]:
    completion_tokens = sum(approx_tokens((c.get("message") or {}).get("content") or c.get("text") or "")
                            for c in choices)
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": model,
            "choices": choices, "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                          "total_tokens": prompt_tokens + completion_tokens}}


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": None}, "object": "error"}
