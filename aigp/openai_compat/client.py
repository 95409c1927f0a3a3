"""The one OpenAI-compatible transport: the teacher's and judge's client, and the pricing predictor's.

:class:`OpenAICompatibleClient` calls a teacher or judge served by vLLM, KServe or any compatible server.

Both routes are supported with the request/response shape vLLM uses: ``/chat/completions`` (messages) and
``/completions`` (the messages rendered as ChatML text). Requests run concurrently (``concurrency``
threads), time out (``timeout_s``), and are retried with exponential backoff and jitter on connection
errors, timeouts, 408/409/429 and 5xx (a ``Retry-After`` header is honoured, capped at ``backoff_max_s``).
A request that still fails returns a :class:`Completion` with ``error`` set instead of raising, so one bad
prompt never loses a batch; callers count and report them.

The API key is read from the environment variable named by ``api_key_env`` (a secret by reference, never a
config value).

:class:`PredictorClient` is the pricing engine's (``aigp.pricing``): asynchronous, several prompts per
``/completions`` request (vLLM batches them), and no transport-level retry -- the engine retries a failed SKU once
at its own sampling temperature, then falls back (``aigp.decisions.FallbackReason``). Both build their HTTP client
with :func:`http_options` and read servers' errors with the same parser.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import Field, field_validator

from aigp.config import StrictConfig
from aigp.decisions import FallbackReason
from aigp.llm.prompt import render_chatml

Messages = Sequence[Mapping[str, str]]
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class EndpointConfig(StrictConfig):
    """Where a model is served and how to call it."""

    base_url: str = Field(description="API root, e.g. http://teacher.kserve.svc:8080/openai/v1 or http://127.0.0.1:8000/v1")
    model: str = Field(min_length=1, description="served model name")
    route: Literal["chat", "completions"] = Field("chat", description="/chat/completions or /completions")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1, description="vLLM sampling extension; omitted when None")
    max_tokens: int = Field(1024, ge=1)
    stop: tuple[str, ...] = ()
    concurrency: int = Field(4, ge=1, le=256, description="requests in flight at once")
    max_retries: int = Field(3, ge=0, le=20, description="retries after the first attempt")
    backoff_s: float = Field(0.5, ge=0.0, description="first retry delay; doubles each retry, plus up to 25% jitter")
    backoff_max_s: float = Field(8.0, ge=0.0)
    timeout_s: float = Field(120.0, gt=0.0, description="per request")
    extra_body: dict[str, Any] = Field(default_factory=dict,
                                       description="extra request fields (e.g. chat_template_kwargs)")

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value.rstrip("/")


@dataclass(frozen=True)
class Completion:
    """One request's result: ``texts`` has one entry per choice (``n``); ``error`` is set on failure."""

    texts: tuple[str, ...]
    finish_reasons: tuple[str, ...]
    attempts: int
    latency_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""


class EndpointError(RuntimeError):
    pass


class OpenAICompatibleClient:
    """Calls one endpoint; thread-safe; use as a context manager or call :meth:`close`."""

    def __init__(self, config: EndpointConfig, *, transport: Any = None):
        import httpx

        self.config = config
        self._http = httpx.Client(**http_options(config.base_url, api_key_env=config.api_key_env,
                                                 concurrency=config.concurrency, timeout_s=config.timeout_s),
                                  transport=transport)
        self._jitter = random.Random(0)
        self._lock = threading.Lock()

    def __enter__(self) -> OpenAICompatibleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------------------------------------
    def payload(self, messages: Messages, *, n: int = 1, seed: int | None = None,
                temperature: float | None = None) -> tuple[str, dict[str, Any]]:
        """(path, JSON body) of one request."""
        cfg = self.config
        body: dict[str, Any] = {"model": cfg.model, "max_tokens": cfg.max_tokens, "n": n,
                                "temperature": cfg.temperature if temperature is None else temperature,
                                "top_p": cfg.top_p}
        if cfg.top_k is not None:
            body["top_k"] = cfg.top_k
        if cfg.stop:
            body["stop"] = list(cfg.stop)
        if seed is not None:
            body["seed"] = int(seed)
        body.update(cfg.extra_body)
        if cfg.route == "chat":
            body["messages"] = [{"role": m["role"], "content": m["content"]} for m in messages]
            return "/chat/completions", body
        body["prompt"] = render_chatml(messages)
        return "/completions", body

    def complete(self, messages: Messages, *, n: int = 1, seed: int | None = None,
                 temperature: float | None = None) -> Completion:
        """One request with retries; never raises for endpoint trouble (see ``Completion.error``)."""
        import httpx

        path, body = self.payload(messages, n=n, seed=seed, temperature=temperature)
        started = time.perf_counter()
        error = "no attempt made"
        attempts = 0
        for attempt in range(self.config.max_retries + 1):
            attempts = attempt + 1
            retry_after: float | None = None
            try:
                response = self._http.post(path, json=body)
            except httpx.TimeoutException as exc:
                error = f"timeout after {self.config.timeout_s} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                error = f"connection error: {type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    try:
                        return self._parse(response.json(), attempts, time.perf_counter() - started)
                    except (ValueError, KeyError, TypeError, IndexError) as exc:
                        return self._failed(f"malformed response: {type(exc).__name__}: {exc}", attempts, started)
                error = f"HTTP {response.status_code}: {_error_message(response)}"
                if response.status_code not in RETRY_STATUS:
                    return self._failed(error, attempts, started)
                retry_after = _retry_after(response.headers.get("retry-after"))
            if attempt < self.config.max_retries:
                time.sleep(self._delay(attempt, retry_after))
        return self._failed(error, attempts, started)

    def complete_many(self, batch: Sequence[Messages], *, n: int = 1, seeds: Sequence[int | None] | None = None,
                      temperature: float | None = None, progress: bool = False,
                      desc: str = "requests") -> list[Completion]:
        """Many requests, ``concurrency`` at a time; results in the order of ``batch``."""
        seeds = list(seeds) if seeds is not None else [None] * len(batch)
        if len(seeds) != len(batch):
            raise ValueError(f"{len(seeds)} seeds for {len(batch)} requests")
        results: list[Completion | None] = [None] * len(batch)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(batch), desc=desc, unit="req")

        def run(i: int) -> None:
            results[i] = self.complete(batch[i], n=n, seed=seeds[i], temperature=temperature)
            if bar is not None:
                with self._lock:
                    bar.update(1)

        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            list(pool.map(run, range(len(batch))))
        if bar is not None:
            bar.close()
        return [r for r in results if r is not None]

    def models(self) -> list[str]:
        response = self._http.get("/models")
        if response.status_code != 200:
            raise EndpointError(f"GET {self.config.base_url}/models: HTTP {response.status_code}")
        return [m["id"] for m in response.json().get("data", [])]

    # ------------------------------------------------------------------------------------------------
    def _delay(self, attempt: int, retry_after: float | None) -> float:
        cfg = self.config
        if retry_after is not None:
            return min(retry_after, cfg.backoff_max_s)
        with self._lock:
            jitter = 1.0 + 0.25 * self._jitter.random()
        return min(cfg.backoff_s * (2.0 ** attempt) * jitter, cfg.backoff_max_s)

    def _parse(self, data: dict[str, Any], attempts: int, latency: float) -> Completion:
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        if self.config.route == "chat":
            texts = tuple((c.get("message") or {}).get("content") or "" for c in choices)
        else:
            texts = tuple(c.get("text") or "" for c in choices)
        usage = data.get("usage") or {}
        return Completion(texts=texts, finish_reasons=tuple(c.get("finish_reason") or "" for c in choices),
                          attempts=attempts, latency_s=latency, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0))

    @staticmethod
    def _failed(error: str, attempts: int, started: float) -> Completion:
        return Completion(texts=(), finish_reasons=(), attempts=attempts, latency_s=time.perf_counter() - started,
                          error=error)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def _error_message(response: Any) -> str:
    """The server's error message of a failed response (OpenAI's ``{"error": {"message": ...}}`` or text)."""
    try:
        data = response.json()
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else (error or data)
        return str(message)[:300]
    except ValueError:
        return response.text[:300]


def http_options(base_url: str, *, api_key_env: str | None, concurrency: int, timeout_s: float) -> dict[str, Any]:
    """The keyword arguments of ``httpx.Client`` / ``httpx.AsyncClient`` for an OpenAI-compatible endpoint: JSON
    headers, the bearer key read from the environment variable ``api_key_env`` (a secret by reference), one
    connection per request in flight, the per-request timeout."""
    import httpx

    headers = {"Content-Type": "application/json"}
    key = os.environ.get(api_key_env) if api_key_env else None
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return {"base_url": base_url.rstrip("/"), "headers": headers, "timeout": timeout_s,
            "limits": httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)}


class PredictorSettingsLike(Protocol):
    """What :class:`PredictorClient` reads of ``aigp.pricing.PredictorSettings``."""

    @property
    def timeout_s(self) -> float: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def api_key_env(self) -> str | None: ...


# ---------------------------------------------------------------------------------------------------------
# the pricing predictor's client: /completions with a batch of prompts, asynchronous (aigp.pricing's engine)
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompletionResult:
    """One prompt's answer, or why there is none (``reason`` PREDICTOR_TIMEOUT / PREDICTOR_ERROR)."""

    text: str | None
    reason: FallbackReason = FallbackReason.NONE
    message: str = ""
    status: int | None = None  # HTTP status of a failed request
    latency_s: float = 0.0


class PredictorClient:
    """``POST {base_url}/completions`` with one or several prompts; never raises for endpoint trouble."""

    def __init__(self, base_url: str, served_model: str, settings: PredictorSettingsLike, *, transport: Any = None):
        import httpx

        self.base_url = base_url.rstrip("/")
        self.served_model = served_model
        self.settings = settings
        self._http = httpx.AsyncClient(**http_options(base_url, api_key_env=settings.api_key_env,
                                                      concurrency=settings.concurrency, timeout_s=settings.timeout_s),
                                       transport=transport)

    def body(self, prompts: Sequence[str], *, temperature: float, seed: int | None) -> dict[str, Any]:
        prompt: str | list[str] = prompts[0] if len(prompts) == 1 else list(prompts)
        body: dict[str, Any] = {"model": self.served_model, "prompt": prompt,
                                "max_tokens": self.settings.max_tokens, "temperature": temperature, "n": 1}
        if seed is not None:
            body["seed"] = int(seed)
        return body

    async def complete(self, prompts: Sequence[str], *, temperature: float,
                       seed: int | None = None) -> list[CompletionResult]:
        import httpx

        started = time.perf_counter()

        def failed(reason: FallbackReason, message: str, status: int | None = None) -> list[CompletionResult]:
            latency = time.perf_counter() - started
            return [CompletionResult(None, reason, message, status, latency) for _ in prompts]

        try:
            response = await self._http.post("/completions", json=self.body(prompts, temperature=temperature,
                                                                            seed=seed))
        except httpx.TimeoutException as exc:
            return failed(FallbackReason.PREDICTOR_TIMEOUT,
                          f"timeout after {self.settings.timeout_s:g} s ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return failed(FallbackReason.PREDICTOR_ERROR, f"connection error: {type(exc).__name__}: {exc}")
        if response.status_code != 200:
            return failed(FallbackReason.PREDICTOR_ERROR,
                          f"HTTP {response.status_code}: {_error_message(response)}", response.status_code)
        try:
            choices = response.json()["choices"]
            texts: list[str | None] = [None] * len(prompts)
            for choice in choices:
                index = int(choice.get("index", 0))
                text = choice.get("text")
                if not 0 <= index < len(prompts) or texts[index] is not None or not isinstance(text, str):
                    raise ValueError(f"choice index {index} does not match one of {len(prompts)} prompt(s)")
                texts[index] = text
            if any(t is None for t in texts):
                raise ValueError(f"{sum(t is None for t in texts)} of {len(prompts)} prompt(s) got no choice")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return failed(FallbackReason.PREDICTOR_ERROR, f"malformed response: {type(exc).__name__}: {exc}", 200)
        latency = time.perf_counter() - started
        return [CompletionResult(t, latency_s=latency) for t in texts]

    async def aclose(self) -> None:
        await self._http.aclose()
