"""The local LLM predictor: a KServe model serving a registered model with transformers, behind the same
OpenAI-compatible routes vLLM exposes, so the pricing transformer's client code is the same here and in
production (KServe's Hugging Face runtime with the vLLM backend, ``manifests/base/serving``).

Routes (added to KServe's app). KServe's own OpenAI routes and its typed request models cannot serve here:
``kserve.protocol.rest.openai.types`` (kserve 0.20.0) imports ``vllm.entrypoints.openai`` when it is imported, and
vllm has no CPU wheel we install; ``tests/test_serving_http.py`` fails once that import works without vllm, so the
routes below can then move onto KServe's models:

- ``POST /openai/v1/completions``: ``prompt`` is a string or a list of strings (one choice per prompt,
  ``index`` = position, as vLLM answers), ``max_tokens``, ``temperature``, ``top_p``, ``n``, ``seed``, ``stop``;
- ``POST /openai/v1/chat/completions``: ``messages`` rendered with the tokenizer's chat template;
- ``GET /openai/v1/models``; and KServe's v1 ``:predict`` with ``{"instances": [{"prompt": ...}]}``.

Errors follow vLLM: 404 for an unknown model name, 400 for a malformed request or a prompt plus
``max_tokens`` longer than the model's context, with ``{"error": {"message", "type", "code"}}``.

Generation is batched across requests (:class:`BatchedGenerator`): a worker thread takes waiting sequences with
the oldest one's sampling settings and similar prompt lengths (up to ``max_batch_size``, waiting at most
``batch_wait_ms`` for more to arrive; a sequence passed over twice is taken next; :func:`pick_batch`), left-pads
them and runs one ``model.generate``. A request's prompts are tokenized together and queued at once, so they can share a
batch, and concurrent one-SKU requests batch as well as one request with many prompts.

    python -m aigp.serving.predictor --model_name=aigp-pricing --model_dir=/mnt/models --http_port=8080
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from kserve import Model
from kserve.errors import InvalidInput

from aigp.pricing import DEFAULT_MODEL_NAME

log = logging.getLogger(__name__)

OPENAI_PREFIX = "/openai/v1"
DEFAULT_MAX_TOKENS = 16  # OpenAI's and vLLM's default for /completions


class RequestError(ValueError):
    """A client error: answered with ``status`` and an OpenAI-style error body."""

    def __init__(self, message: str, status: int = 400, kind: str = "BadRequestError"):
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    seed: int | None

    @property
    def key(self) -> tuple:
        # Greedy decoding ignores the seed, so greedy requests batch together whatever seed they carry.
        return (0.0, 1.0, None) if self.temperature == 0 else (self.temperature, self.top_p, self.seed)


@dataclass
class _Job:
    ids: list[int]
    max_new: int
    sampling: Sampling
    stop: tuple[str, ...]
    future: Future = field(default_factory=Future)
    skipped: int = 0  # batches formed without this job while it could have joined them


def pick_batch(waiting: Sequence[_Job], max_batch_size: int, max_skips: int = 2) -> list[_Job]:
    """The next batch out of ``waiting`` (oldest first): jobs with the oldest job's sampling settings, at most
    ``max_batch_size`` of them, of similar prompt lengths. Left padding makes every row of a batch as long as its
    longest prompt, so the batch is the run of ``max_batch_size`` jobs (in length order) with the least padding, as
    in-process generation (``aigp.align.generation``) sorts its prompts by length; once the oldest job has been
    passed over ``max_skips`` times, the batch is the least-padded run that includes it, so no job waits forever."""
    oldest = waiting[0]
    same = [j for j in waiting if j.sampling.key == oldest.sampling.key]
    if len(same) <= max_batch_size:
        return same
    ordered = sorted(same, key=lambda j: len(j.ids))  # stable: arrival order among equal lengths
    starts = range(len(ordered) - max_batch_size + 1)
    if oldest.skipped >= max_skips:
        anchor = next(i for i, j in enumerate(ordered) if j is oldest)
        starts = range(max(0, anchor - max_batch_size + 1), min(anchor, len(ordered) - max_batch_size) + 1)

    def padding(lo: int) -> int:
        width = len(ordered[lo + max_batch_size - 1].ids)
        return sum(width - len(j.ids) for j in ordered[lo:lo + max_batch_size])

    best = min(starts, key=padding)  # the first (shortest prompts) among equals
    return ordered[best:best + max_batch_size]


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str  # "stop" (end of turn or a stop string) or "length"
    prompt_tokens: int
    completion_tokens: int


class BatchedGenerator:
    """Greedy or sampled generation, batched across callers by a worker thread."""

    def __init__(self, model: Any, tokenizer: Any, *, max_batch_size: int = 32, batch_wait_ms: float = 5.0,
                 max_skips: int = 2):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.max_skips = max_skips  # batches a waiting job may be passed over for better-matched lengths
        self.batch_wait_s = batch_wait_ms / 1000.0
        self.context = int(getattr(model.config, "max_position_embeddings", 2048))
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self.batches = 0  # generate() calls so far (tests and the benchmark read it)
        self.sequences = 0
        self.prompt_tokens = 0  # prompt tokens prefilled, and the padding added to them
        self.padding_tokens = 0
        self.generate_s = 0.0
        self._queue: queue.Queue[list[_Job] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="aigp-generate", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        log.info("%s", self.stats())

    def stats(self) -> str:
        """One line on the batches so far (the predictor logs it when it stops; the benchmark reads it)."""
        mean = self.sequences / self.batches if self.batches else 0.0
        padded = self.padding_tokens / max(1, self.prompt_tokens + self.padding_tokens)
        return (f"generated {self.sequences} sequences in {self.batches} batches ({mean:.1f} per batch), "
                f"{self.prompt_tokens} prompt tokens, padding {100 * padded:.1f}% of the prefill, "
                f"{self.generate_s:.1f} s in generate()")

    def encode(self, text: str) -> list[int]:
        return self.encode_many([text])[0]

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of several texts in one tokenizer call (the fast tokenizer encodes a batch at once)."""
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def submit(self, ids: list[int], max_tokens: int, sampling: Sampling, stop: Sequence[str] = ()) -> Future:
        return self.submit_many([(ids, sampling)], max_tokens, stop)[0]

    def submit_many(self, prompts: Sequence[tuple[list[int], Sampling]], max_tokens: int,
                    stop: Sequence[str] = ()) -> list[Future]:
        """Queue a request's sequences at once (so they can share a batch), or none of them: every prompt is
        checked before any is queued, so a refused request leaves no orphan generation behind."""
        for ids, _ in prompts:
            if not ids:
                raise RequestError("the prompt is empty after tokenization")
            if len(ids) + max_tokens > self.context:
                raise RequestError(f"This model's maximum context length is {self.context} tokens. However, you "
                                   f"requested {len(ids) + max_tokens} tokens ({len(ids)} in the prompt, "
                                   f"{max_tokens} for the completion). Please reduce the length of the prompt or "
                                   "completion.")
        jobs = [_Job(ids, max_tokens, sampling, tuple(stop)) for ids, sampling in prompts]
        if jobs:
            self._queue.put(jobs)
        return [job.future for job in jobs]

    # --- the worker ---------------------------------------------------------------------------------------
    def _loop(self) -> None:
        waiting: list[_Job] = []  # oldest first
        while True:
            if not waiting:
                jobs = self._queue.get()
                if jobs is None:
                    return
                waiting.extend(jobs)
            deadline = time.monotonic() + self.batch_wait_s
            while len(waiting) < 4 * self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    jobs = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if jobs is None:
                    self._fail(waiting, RuntimeError("the predictor is shutting down"))
                    return
                waiting.extend(jobs)
            batch = pick_batch(waiting, self.max_batch_size, self.max_skips)
            chosen = {id(j) for j in batch}
            waiting = [j for j in waiting if id(j) not in chosen]
            for job in waiting:
                if job.sampling.key == batch[0].sampling.key:
                    job.skipped += 1
            try:
                results = self._generate(batch)
            except Exception as exc:  # answer every caller of the batch, keep serving
                log.exception("generation failed for a batch of %d", len(batch))
                self._fail(batch, exc)
                continue
            for job, result in zip(batch, results, strict=True):
                job.future.set_result(result)

    @staticmethod
    def _fail(jobs: list[_Job], exc: BaseException) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(exc)

    def _generate(self, batch: list[_Job]) -> list[Generation]:
        import torch

        width = max(len(j.ids) for j in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, job in enumerate(batch):  # left padding: every sequence ends where generation starts
            input_ids[row, width - len(job.ids):] = torch.tensor(job.ids, dtype=torch.long)
            attention[row, width - len(job.ids):] = 1
        sampling = batch[0].sampling
        kwargs: dict[str, Any] = {"max_new_tokens": max(j.max_new for j in batch), "pad_token_id": self.pad_id,
                                  "eos_token_id": self.eos_id}
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
            torch.manual_seed(sampling.seed if sampling.seed is not None else int.from_bytes(os.urandom(4), "big"))
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        started = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
        self.generate_s += time.perf_counter() - started
        self.batches += 1
        self.sequences += len(batch)
        self.prompt_tokens += sum(len(j.ids) for j in batch)
        self.padding_tokens += sum(width - len(j.ids) for j in batch)
        results = []
        for row, job in enumerate(batch):
            tokens = out[row, width:].tolist()[: job.max_new]
            finish = "length"
            if self.eos_id in tokens:
                tokens = tokens[: tokens.index(self.eos_id)]
                finish = "stop"
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            for stop in job.stop:
                cut = text.find(stop) if stop else -1
                if cut >= 0:
                    text, finish = text[:cut], "stop"
            results.append(Generation(text, finish, len(job.ids), len(tokens)))
        return results


# ---------------------------------------------------------------------------------------------------------
# request parsing (vLLM's field names and defaults)
# ---------------------------------------------------------------------------------------------------------
def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"{name}={value!r}: expected a number")
    if not low <= float(value) <= high:
        raise RequestError(f"{name}={value!r}: expected a value in [{low}, {high}]")
    return float(value)


def _integer(body: dict, name: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name}={value!r}: expected an integer")
    if not low <= value <= high:
        raise RequestError(f"{name}={value!r}: expected an integer in [{low}, {high}]")
    return value


@dataclass(frozen=True)
class GenerationRequest:
    prompts: list[str]
    max_tokens: int
    n: int
    sampling: Sampling
    stop: tuple[str, ...]


def parse_generation(body: Any, served_model: str, *, chat: bool, render_chat: Any) -> GenerationRequest:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model")
    if model != served_model:
        raise RequestError(f"The model `{model}` does not exist.", 404, "NotFoundError")
    if body.get("stream"):
        raise RequestError("stream=true is not supported by this predictor")
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages):
            raise RequestError("messages: expected a non-empty list of {role, content} objects with string content")
        prompts = [render_chat([{"role": m["role"], "content": m["content"]} for m in messages])]
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            prompts = [prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            prompts = list(prompt)
        else:
            raise RequestError("prompt: expected a string or a non-empty list of strings")
    max_tokens = _integer(body, "max_completion_tokens" if chat and "max_completion_tokens" in body else "max_tokens",
                          DEFAULT_MAX_TOKENS, 1, 1_000_000)
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop):
        raise RequestError("stop: expected a string or a list of strings")
    sampling = Sampling(_number(body, "temperature", 1.0, 0.0, 2.0), _number(body, "top_p", 1.0, 1e-6, 1.0),
                        _integer(body, "seed", None, -(2**63), 2**63 - 1))
    n = _integer(body, "n", 1, 1, 16)
    assert max_tokens is not None and n is not None
    if n > 1 and sampling.temperature == 0:
        raise RequestError("n > 1 needs temperature > 0 (greedy samples are identical)")
    return GenerationRequest(prompts, max_tokens, n, sampling, tuple(stop))


def _error(exc: RequestError) -> dict[str, Any]:
    return {"error": {"message": str(exc), "type": exc.kind, "code": exc.status}, "object": "error"}


# ---------------------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------------------
class LLMPredictor(Model):
    """A registered model (local directory or S3 URI) served with transformers on CPU or GPU."""

    def __init__(self, name: str, model_dir: str, *, max_batch_size: int = 32, batch_wait_ms: float = 5.0):
        super().__init__(name)
        self.model_dir = model_dir
        self.max_batch_size = max_batch_size
        self.batch_wait_ms = batch_wait_ms
        self.generator: BatchedGenerator | None = None
        self.created = int(time.time())

    def load(self) -> bool:
        from aigp.llm.model_factory import load_model, resolve_model
        from aigp.registry import storage

        # A registry storage URI (file:// for a local MLflow store, s3:// in production) or a local path.
        self.local_dir = resolve_model(storage.localize(self.model_dir))
        model, tokenizer = load_model(self.local_dir)
        self.generator = BatchedGenerator(model, tokenizer, max_batch_size=self.max_batch_size,
                                          batch_wait_ms=self.batch_wait_ms)
        log.info("serving %s as %r (context %d tokens, batches of up to %d)", self.model_dir, self.name,
                 self.generator.context, self.max_batch_size)
        self.ready = True
        return self.ready

    def stop(self) -> None:
        if self.generator is not None:
            self.generator.close()
        self.ready = False

    async def _run(self, request: GenerationRequest) -> list[list[Generation]]:
        """Generations per prompt (``n`` each); the jobs join the generator's batches."""
        assert self.generator is not None, "load() first"
        generator = self.generator
        seed = request.sampling.seed
        sequences = []
        for j, ids in enumerate(generator.encode_many(request.prompts)):
            for k in range(request.n):
                sampling = request.sampling if seed is None or request.n == 1 else Sampling(
                    request.sampling.temperature, request.sampling.top_p, seed + j * request.n + k)
                sequences.append((ids, sampling))
        futures = generator.submit_many(sequences, request.max_tokens, request.stop)
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        return [list(results[i * request.n:(i + 1) * request.n]) for i in range(len(request.prompts))]

    @staticmethod
    def _usage(generations: list[list[Generation]]) -> dict[str, int]:
        prompt = sum(g[0].prompt_tokens for g in generations)
        completion = sum(x.completion_tokens for g in generations for x in g)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    async def create_completion(self, body: Any) -> dict[str, Any]:
        assert self.generator is not None, "load() first"
        request = parse_generation(body, self.name, chat=False, render_chat=self.generator.render_chat)
        generations = await self._run(request)
        choices = [{"index": i * request.n + k, "text": g.text, "logprobs": None, "finish_reason": g.finish_reason,
                    "stop_reason": None}
                   for i, per_prompt in enumerate(generations) for k, g in enumerate(per_prompt)]
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": self.name, "choices": choices, "usage": self._usage(generations)}

    async def create_chat_completion(self, body: Any) -> dict[str, Any]:
        assert self.generator is not None, "load() first"
        request = parse_generation(body, self.name, chat=True, render_chat=self.generator.render_chat)
        generations = await self._run(request)
        choices = [{"index": k, "message": {"role": "assistant", "content": g.text}, "logprobs": None,
                    "finish_reason": g.finish_reason, "stop_reason": None} for k, g in enumerate(generations[0])]
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": self.name, "choices": choices, "usage": self._usage(generations)}

    def models(self) -> dict[str, Any]:
        context = self.generator.context if self.generator is not None else None
        return {"object": "list", "data": [{"id": self.name, "object": "model", "created": self.created,
                                            "owned_by": "aigp", "root": str(self.model_dir),
                                            "max_model_len": context}]}

    async def predict(self, payload: Any, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> dict[str, Any]:
        """KServe v1: ``{"instances": [{"prompt": str, "max_tokens": int}]}`` (greedy)."""
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(instances, list) or not instances or not all(
                isinstance(i, dict) and isinstance(i.get("prompt"), str) for i in instances):
            raise InvalidInput("instances: expected a non-empty list of {\"prompt\": str} objects")
        try:
            requests = [parse_generation({"model": self.name, "prompt": item["prompt"], "temperature": 0,
                                          "max_tokens": item.get("max_tokens", DEFAULT_MAX_TOKENS)}, self.name,
                                         chat=False, render_chat=None) for item in instances]
            outputs = [g[0][0] for g in await asyncio.gather(*(self._run(r) for r in requests))]  # batched together
        except RequestError as exc:
            raise InvalidInput(str(exc)) from None
        return {"predictions": [{"text": g.text, "finish_reason": g.finish_reason} for g in outputs]}


def add_openai_routes(app: Any, model: LLMPredictor, prefix: str = OPENAI_PREFIX) -> None:
    """The OpenAI-compatible routes on a FastAPI app (KServe's ``kserve.model_server.app``)."""

    async def body_of(request: Request) -> Any:
        try:
            return json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(f"the request body is not JSON: {exc}") from None

    def route(handler: Any) -> Any:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                return JSONResponse(await handler(await body_of(request)))
            except RequestError as exc:
                return JSONResponse(_error(exc), status_code=exc.status)
        return endpoint

    async def models() -> JSONResponse:
        return JSONResponse(model.models())

    app.add_api_route(f"{prefix}/completions", route(model.create_completion), methods=["POST"])
    app.add_api_route(f"{prefix}/chat/completions", route(model.create_chat_completion), methods=["POST"])
    app.add_api_route(f"{prefix}/models", models, methods=["GET"])


# ---------------------------------------------------------------------------------------------------------
# python -m aigp.serving.predictor, and serving it from another process
# ---------------------------------------------------------------------------------------------------------
def build_parser() -> Any:
    import argparse

    from kserve import model_server

    parser = argparse.ArgumentParser(parents=[model_server.parser], description="AIGP local LLM predictor")
    parser.add_argument("--model_dir", default="/mnt/models",
                        help="model directory or s3:// URI (KServe's storage initializer mounts /mnt/models)")
    parser.add_argument("--max_batch_size", type=int, default=32, help="sequences per generate() call")
    parser.add_argument("--batch_wait_ms", type=float, default=5.0, help="how long a batch waits for more work")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    from kserve import ModelServer, model_server

    args, _ = build_parser().parse_known_args(argv)
    handler = logging.StreamHandler()  # KServe configures its own loggers only: this module's INFO lines too
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d aigp.serving.predictor %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = LLMPredictor(args.model_name, args.model_dir, max_batch_size=args.max_batch_size,
                         batch_wait_ms=args.batch_wait_ms)
    model.load()
    add_openai_routes(model_server.app, model)
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, enable_grpc=args.enable_grpc,
                workers=1).start([model])


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(url: str, proc: subprocess.Popen | None = None, timeout_s: float = 180.0) -> None:
    """Poll ``url`` until it answers 200 (raises if ``proc`` exits first or the time runs out)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before it was ready ({url})")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} was not ready after {timeout_s:.0f} s")
        time.sleep(0.2)


class ServerStartError(ValueError):
    """A local server did not come up (a corrupt model, a port in use): the message names the cause from its log."""


def die_with_parent() -> None:
    """``preexec_fn`` of a server process: the kernel kills it (SIGKILL) when the process that started it dies,
    killed or not, so a SIGKILLed batch run never leaves a predictor behind (Linux ``PR_SET_PDEATHSIG``)."""
    import ctypes
    import signal

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        return
    if os.getppid() != parent:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)


def last_error_line(log_path: str | Path, max_bytes: int = 65536) -> str:
    """The last ``SomethingError: ...`` / ``...Exception: ...`` line of a server log ('' when none)."""
    import re

    try:
        with open(log_path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(log_path) - max_bytes))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    pattern = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Exit)\b.*)$")
    found = [m.group(1).strip() for line in text.splitlines() if (m := pattern.match(line.strip()))]
    return found[-1][:300] if found else ""


@contextlib.contextmanager
def serve_subprocess(argv: list[str], ready_url: Callable[[str], str], *, port: int, url_suffix: str = "",
                     env: Mapping[str, str] | None = None, log_path: str | Path | None = None,
                     timeout_s: float = 180.0, what: str = "server") -> Iterator[str]:
    """Start a server process on a loopback ``port``, yield ``http://127.0.0.1:<port><url_suffix>`` once
    ``ready_url(base)`` answers 200, and stop it on exit (SIGTERM, then SIGKILL after 30 s). It dies with this
    process (:func:`die_with_parent`). Its output goes to ``log_path`` (appended; a temporary file when None,
    kept only when the server fails to start); a failed start is a :class:`ServerStartError` naming the log and
    the last error in it."""
    import tempfile

    environ = {**os.environ, **(env or {}), "TOKENIZERS_PARALLELISM": "false"}
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="aigp-server-", suffix=".log")
        os.close(handle)
        log_path, temporary = Path(name), True
    else:
        temporary = False
    output = open(log_path, "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=environ,
                            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
    base = f"http://127.0.0.1:{port}{url_suffix}"
    started = False
    try:
        try:
            wait_until_ready(ready_url(base), proc, timeout_s)
        except (RuntimeError, TimeoutError) as exc:
            output.flush()
            cause = last_error_line(log_path)
            temporary = False  # keep the log the message names
            raise ServerStartError(f"{what} did not start: {exc}" + (f"; {cause}" if cause else "")
                                   + f" (log: {log_path})") from None
        started = True
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        output.close()
        if temporary and started:
            Path(log_path).unlink(missing_ok=True)


@contextlib.contextmanager
def serve_local_predictor(model_dir: str | Path, served_model: str = DEFAULT_MODEL_NAME, *, port: int | None = None,
                          max_batch_size: int = 32, batch_wait_ms: float = 5.0, threads: int | None = None,
                          log_path: str | Path | None = None, timeout_s: float = 180.0) -> Iterator[str]:
    """Run ``python -m aigp.serving.predictor`` for ``model_dir`` on a loopback port; yields its OpenAI API
    root (``http://127.0.0.1:<port>/openai/v1``) and stops it (SIGTERM) on exit.

    The predictor shares the machine with the process that calls it (batch pricing, the transformer), so its
    OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets a policy): spinning
    threads of a parallel region wait for one that another process has taken the core from, which made 2-thread
    generation on 2 busy cores 4x slower (``bench/bench_served_vs_inprocess.py``)."""
    port = port or free_port()
    argv = [sys.executable, "-m", "aigp.serving.predictor", f"--model_name={served_model}",
            f"--model_dir={model_dir}", f"--http_port={port}", "--enable_grpc=false",
            f"--max_batch_size={max_batch_size}", f"--batch_wait_ms={batch_wait_ms}"]
    if threads:
        argv.append(f"--threads={threads}")
    env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    with serve_subprocess(argv, lambda base: f"{base}/models", port=port, url_suffix=OPENAI_PREFIX, env=env,
                          log_path=log_path, timeout_s=timeout_s, what=f"the local predictor for {model_dir}") as base:
        yield base


if __name__ == "__main__":
    main()
