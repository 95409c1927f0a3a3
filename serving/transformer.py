"""The pricing transformer: a KServe model that prices SKUs with the LLM predictor.

    request (one or many SKU ids, optional date) -> Feast online features (``llm_prompt``) -> prompt
    -> LLM predictor (OpenAI-compatible /completions: vLLM in production, serving/predictor.py locally)
    -> Ψ (last JSON action) -> A_safe -> per SKU: new discount, change, rationale, model version,
    experiment group, fallback flag and reason

The pricing itself is :class:`aigp.pricing.PricingEngine` (shared with the nightly batch job); this module
adds the two inference protocols, request validation and Prometheus counters:

- v1 ``POST /v1/models/<name>:predict`` with ``{"instances": [17, {"sku_id": 42}], "date": "2026-03-05"}``
  -> ``{"predictions": [{"sku_id": 17, "new_discount": ..., ...}], "date": ..., "model_name": ...}``;
- v2 (Open Inference Protocol) ``POST /v2/models/<name>/infer`` with an ``INT64`` input ``sku_id`` of shape
  ``[n]`` and an optional ``BYTES`` input ``date`` of shape ``[1]`` -> one output per response field
  (``sku_id``, ``new_discount``, ``discount_change``, ``prev_discount``, ``rationale``, ``model_version``,
  ``group``, ``fallback``, ``fallback_reason``; ``NaN`` for an unpriced SKU's discounts).

A malformed request is a 400 naming the field (KServe's ``InvalidInput``), never a 5xx; a feature store or
predictor failure is a per-SKU fallback in a 200 response, counted in ``/metrics`` (``serving/metrics.py``).

Run it as the InferenceService does (``manifests/base/serving/inferenceservice-transformer.yaml``):
``python -m aigp.serving.transformer --model_name=aigp-pricing --http_port=8080`` with the ConfigMap's
``AIGP_PREDICTOR_URL``, ``AIGP_FEATURE_SERVER_URL``, ``AIGP_MODEL_NAME`` and ``MLFLOW_TRACKING_URI`` (each
experiment group's model version comes from the registry; re-read every ``registry_refresh_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput
from pydantic import Field

from aigp.config import StrictConfig
from aigp.pricing import DEFAULT_MODEL_NAME, Arm, Decision, PricingConfig, PricingEngine, Resolver, resolve_arms
from aigp.serving import metrics
from aigp.serving.features import EmbeddedFeatureSource, FeatureServerSource, FeatureSource

log = logging.getLogger(__name__)

MAX_SKU_ID = 2**63 - 1
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INT_TYPES = ("INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8")


class TransformerConfig(StrictConfig):
    """The transformer's settings; each field also has an environment variable (``from_env``)."""

    pricing: PricingConfig = Field(default_factory=lambda: PricingConfig())
    predictor_url: str | None = Field(None, description="OpenAI API root of the champion's predictor "
                                                        "($AIGP_PREDICTOR_URL)")
    feature_server_url: str | None = Field(None, description="Feast feature server ($AIGP_FEATURE_SERVER_URL); "
                                                             "unset: the embedded store below")
    feature_data: Path | None = Field(None, description="embedded store: source tables ($AIGP_FEATURE_DATA)")
    feature_state_dir: Path | None = Field(None, description="embedded store: registry and SQLite online store "
                                                             "($AIGP_FEATURE_STATE_DIR)")
    online_store: Literal["sqlite", "redis"] = Field("sqlite", description="embedded store kind ($AIGP_ONLINE_STORE)")
    redis_connection_string: str | None = Field(None, description="Feast syntax host:port[,password=..] "
                                                                  "($REDIS_CONNECTION_STRING)")
    tokenizer: str | None = Field(None, description="model directory or URI whose tokenizer counts the prompt "
                                                    "budget (pricing.prompt.max_prompt_tokens; None: approximate)")
    max_skus_per_request: int = Field(1024, ge=1, le=100_000, description="larger requests are refused (400)")
    registry_refresh_s: float = Field(300.0, ge=0, description="re-resolve model versions this often (0 = never)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, path: str | Path | None = None,
                 **overrides: Any) -> TransformerConfig:
        """YAML ``path`` (or ``$AIGP_PRICING_CONFIG``), then the environment, then ``overrides`` (not None)."""
        env = os.environ if environ is None else environ
        path = path or env.get("AIGP_PRICING_CONFIG")
        base = cls.from_yaml(path).model_dump() if path else {}
        from_env = {"predictor_url": env.get("AIGP_PREDICTOR_URL"),
                    "feature_server_url": env.get("AIGP_FEATURE_SERVER_URL"),
                    "feature_data": env.get("AIGP_FEATURE_DATA"),
                    "feature_state_dir": env.get("AIGP_FEATURE_STATE_DIR"),
                    "online_store": env.get("AIGP_ONLINE_STORE"),
                    "redis_connection_string": env.get("REDIS_CONNECTION_STRING")}
        values = {**base, **{k: v for k, v in from_env.items() if v}, **{k: v for k, v in overrides.items() if v}}
        if env.get("AIGP_MODEL_NAME"):
            pricing = dict(values.get("pricing") or {})
            pricing["model_name"] = env["AIGP_MODEL_NAME"]
            values["pricing"] = pricing
        return cls.build(**values)

    def feature_source(self) -> FeatureSource:
        if self.feature_server_url:
            return FeatureServerSource(self.feature_server_url)
        return EmbeddedFeatureSource.open(feature_data=self.feature_data, state_dir=self.feature_state_dir,
                                          online_store=self.online_store,
                                          redis_connection_string=self.redis_connection_string)


@dataclass(frozen=True)
class PricingRequest:
    sku_ids: list[int]
    date: dt.date | None
    protocol: Literal["v1", "v2"]
    request_id: str | None = None


# ---------------------------------------------------------------------------------------------------------
# request validation: every error names the field
# ---------------------------------------------------------------------------------------------------------
def _sku_id(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInput(f"{field}={_shown(value)}: expected an integer SKU id")
    number = int(value)
    if not 0 <= number <= MAX_SKU_ID:
        raise InvalidInput(f"{field}={number}: expected a SKU id in [0, 2^63)")
    return number


def _date(value: Any, field: str) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"{field}: expected a UTF-8 date YYYY-MM-DD") from None
    if not isinstance(value, str) or not _DATE.match(value):
        raise InvalidInput(f"{field}={_shown(value)}: expected a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{field}={_shown(value)}: not a calendar date") from None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_count(n: int, limit: int, field: str) -> None:
    if n == 0:
        raise InvalidInput(f"{field}: expected at least one SKU id")
    if n > limit:
        raise InvalidInput(f"{field}: {n} SKU ids exceed the limit of {limit} per request")


_JSON_MEDIA = ("application/json", "application/octet-stream", "text/plain", "")


def v1_body(payload: Any, headers: Mapping[str, str] | None) -> Any:
    """The v1 body as JSON. KServe decodes it only for a bare ``application/json`` content type and hands anything
    else (``application/json; charset=utf-8``, ``application/octet-stream``) over as bytes: those are decoded
    here (UTF-8, strict JSON: no NaN or Infinity); other media types are refused."""
    if not isinstance(payload, bytes | bytearray):
        return payload
    content_type = next((v for k, v in (headers or {}).items() if k.lower() == "content-type"), "")
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media not in _JSON_MEDIA and not media.endswith("+json"):
        raise InvalidInput(f"content-type={_shown(content_type)}: expected application/json")
    charset = next((p.split("=", 1)[1].strip().strip('"').lower() for p in params.split(";")
                    if p.strip().lower().startswith("charset=")), "utf-8")
    if charset not in ("utf-8", "utf8"):
        raise InvalidInput(f"content-type charset={_shown(charset)}: expected utf-8")
    import orjson

    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body: not JSON ({exc})") from None


def parse_v1(payload: Any, limit: int) -> PricingRequest:
    """``{"instances": [17, {"sku_id": 42}, ...], "date": "YYYY-MM-DD"}`` (``date`` optional)."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"request body: expected a JSON object with 'instances', got {type(payload).__name__}")
    unknown = sorted(str(k) for k in payload if k not in ("instances", "date"))
    if unknown:
        raise InvalidInput(f"{_shown(unknown[0])}: unknown field; expected 'instances' and optionally 'date'")
    instances = payload.get("instances")
    if not isinstance(instances, list):
        raise InvalidInput(f"instances={_shown(instances)}: expected a list of SKU ids or {{\"sku_id\": id}} objects")
    _check_count(len(instances), limit, "instances")
    ids = []
    for i, item in enumerate(instances):
        if isinstance(item, dict):
            extra = sorted(str(k) for k in item if k != "sku_id")
            if extra:
                raise InvalidInput(f"instances[{i}].{extra[0]}: unknown field; an instance is {{\"sku_id\": id}}")
            if "sku_id" not in item:
                raise InvalidInput(f"instances[{i}].sku_id: required")
            ids.append(_sku_id(item["sku_id"], f"instances[{i}].sku_id"))
        else:
            ids.append(_sku_id(item, f"instances[{i}]"))
    return PricingRequest(ids, _date(payload.get("date"), "date"), "v1")


def _flat(data: Any) -> list:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).tolist()
    if isinstance(data, list | tuple):
        out: list = []
        for item in data:
            out.extend(_flat(item) if isinstance(item, list | tuple | np.ndarray) else [item])
        return out
    return [data]


def parse_v2(request: InferRequest, limit: int) -> PricingRequest:
    """Open Inference Protocol: input ``sku_id`` (an integer datatype, shape [n] or [n, 1]) and optionally
    ``date`` (BYTES, one element)."""
    by_name: dict[str, Any] = {}
    for i, tensor in enumerate(request.inputs or []):
        name = tensor.name
        if name not in ("sku_id", "date"):
            raise InvalidInput(f"inputs[{i}].name={_shown(name)}: unknown input; expected 'sku_id' and "
                               "optionally 'date'")
        if name in by_name:
            raise InvalidInput(f"inputs[{i}].name={name!r}: given twice")
        by_name[name] = tensor
    if "sku_id" not in by_name:
        raise InvalidInput("inputs: no input named 'sku_id' (INT64, shape [n])")
    sku = by_name["sku_id"]
    if sku.datatype not in _INT_TYPES:
        raise InvalidInput(f"inputs.sku_id.datatype={sku.datatype!r}: expected INT64 (or another integer type)")
    shape = list(sku.shape or [])
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or any(
            isinstance(s, bool) or not isinstance(s, int) for s in shape):
        raise InvalidInput(f"inputs.sku_id.shape={_shown(shape)}: expected [n] or [n, 1]")
    values = _flat(sku.data if sku.data is not None else [])
    if len(values) != shape[0]:
        raise InvalidInput(f"inputs.sku_id: shape {shape} holds {shape[0]} value(s) but data has {len(values)}")
    _check_count(len(values), limit, "inputs.sku_id")
    ids = [_sku_id(v, f"inputs.sku_id.data[{j}]") for j, v in enumerate(values)]
    date = None
    if "date" in by_name:
        tensor = by_name["date"]
        if tensor.datatype != "BYTES":
            raise InvalidInput(f"inputs.date.datatype={tensor.datatype!r}: expected BYTES")
        data = _flat(tensor.data if tensor.data is not None else [])
        if len(data) != 1:
            raise InvalidInput(f"inputs.date: expected exactly one value, got {len(data)}")
        date = _date(data[0], "inputs.date.data[0]")
    return PricingRequest(ids, date, "v2", request.id)


# ---------------------------------------------------------------------------------------------------------
# responses
# ---------------------------------------------------------------------------------------------------------
def v1_response(decisions: Sequence[Decision], request: PricingRequest, model_name: str) -> dict[str, Any]:
    return {"predictions": [d.as_response() for d in decisions],
            "date": request.date.isoformat() if request.date else None, "model_name": model_name}


def v2_response(decisions: Sequence[Decision], request: PricingRequest, name: str) -> InferResponse:
    n = len(decisions)

    def floats(values: list[float | None]) -> list[float]:
        return [float("nan") if v is None else float(v) for v in values]

    outputs = [
        InferOutput("sku_id", [n], "INT64", [d.sku_id for d in decisions]),
        InferOutput("new_discount", [n], "FP64", floats([d.new_discount for d in decisions])),
        InferOutput("discount_change", [n], "FP64", floats([d.discount_change for d in decisions])),
        InferOutput("prev_discount", [n], "FP64", floats([d.prev_discount for d in decisions])),
        InferOutput("rationale", [n], "BYTES", [d.rationale for d in decisions]),
        InferOutput("model_version", [n], "BYTES", [d.model_version for d in decisions]),
        InferOutput("group", [n], "BYTES", [d.group for d in decisions]),
        InferOutput("fallback", [n], "BOOL", [d.fallback for d in decisions]),
        InferOutput("fallback_reason", [n], "BYTES", [d.fallback_reason.value for d in decisions]),
    ]
    return InferResponse(response_id=request.request_id or str(uuid.uuid4()), model_name=name,
                         infer_outputs=outputs)


# ---------------------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------------------
class PricingTransformer(Model):
    """KServe model: ``load()`` resolves the arms and opens the feature source; ``predict()`` prices."""

    def __init__(self, name: str, config: TransformerConfig | None = None, *, features: FeatureSource | None = None,
                 resolver: Resolver | None = None, transport: Any = None):
        super().__init__(name)
        self.config = config or TransformerConfig()
        self._features = features
        self._resolver = resolver
        self._transport = transport
        self.engine: PricingEngine | None = None
        self._resolved_at = 0.0
        self._refreshing = False

    # --- lifecycle --------------------------------------------------------------------------------------
    def _resolve(self) -> dict[str, Arm]:
        from aigp.registry.model_registry import registry_resolver

        resolver = self._resolver or registry_resolver()
        self._resolver = resolver
        return resolve_arms(self.config.pricing, resolver, default_url=self.config.predictor_url)

    def load(self) -> bool:
        arms = self._resolve()
        if self._features is None:
            self._features = self.config.feature_source()
        count_tokens = None
        if self.config.tokenizer and self.config.pricing.prompt.max_prompt_tokens:
            from aigp.serving.batch import token_counter_for

            count_tokens = token_counter_for(self.config.tokenizer)
        self.engine = PricingEngine(self.config.pricing, arms, observer=metrics.PrometheusObserver(),
                                    transport=self._transport, count_tokens=count_tokens)
        self._resolved_at = time.monotonic()
        log.info("pricing transformer %s ready: %s", self.name,
                 ", ".join(f"{g} -> {self.config.pricing.model_name} v{a.model_version} at {a.base_url}"
                           for g, a in arms.items()))
        self.ready = True
        return self.ready

    def stop(self) -> None:
        if self._features is not None:
            self._features.close()
        self.ready = False

    async def _maybe_refresh(self) -> None:
        """Re-read the arms' model versions from the registry (a promotion changes the champion)."""
        refresh = self.config.registry_refresh_s
        if not refresh or self._refreshing or time.monotonic() - self._resolved_at < refresh:
            return
        self._refreshing = True
        try:
            arms = await asyncio.to_thread(self._resolve)
            assert self.engine is not None
            self.engine.arms.update({g: a for g, a in arms.items() if a.base_url == self.engine.arms[g].base_url})
        except Exception as exc:  # keep serving the versions we know; the registry may be briefly away
            log.warning("could not re-resolve model versions (%s: %s); keeping the current ones",
                        type(exc).__name__, exc)
        finally:
            self._resolved_at = time.monotonic()
            self._refreshing = False

    # --- inference --------------------------------------------------------------------------------------
    def validate(self, payload: Any) -> Any:
        return payload  # parse_v1 / parse_v2 validate every field

    def parse(self, payload: Any, headers: Mapping[str, str] | None = None) -> PricingRequest:
        limit = self.config.max_skus_per_request
        if isinstance(payload, InferRequest):
            return parse_v2(payload, limit)
        return parse_v1(v1_body(payload, headers), limit)

    async def price(self, sku_ids: Sequence[int], date: dt.date | None) -> list[Decision]:
        """Decisions for ``sku_ids`` (a SKU asked for twice is priced once), in request order."""
        assert self.engine is not None, "load() first"
        await self._maybe_refresh()
        unique = list(dict.fromkeys(sku_ids))
        assert self._features is not None
        try:
            rows = await self._features.rows(unique)
        except Exception as exc:  # the store is down: nothing is known, nothing is changed
            log.error("feature lookup failed for %d SKU(s): %s: %s", len(unique), type(exc).__name__, exc)
            rows = [{"sku_id": s, "missing_features": ["prev_discount"],
                     "feature_error": f"{type(exc).__name__}: {exc}"} for s in unique]
        decisions = await self.engine.price(rows, date=date)
        for row, decision in zip(rows, decisions, strict=True):
            if "feature_error" in row:
                decision.detail = f"feature store unavailable ({row['feature_error'][:200]}); {decision.detail}"
        by_sku = {d.sku_id: d for d in decisions}
        return [by_sku[s] for s in sku_ids]

    async def predict(self, payload: Any, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> dict[str, Any] | InferResponse:
        protocol = "v2" if isinstance(payload, InferRequest) else "v1"
        started = time.perf_counter()
        try:
            request = self.parse(payload, headers)
        except InvalidInput:
            metrics.REQUESTS.labels(protocol, "bad_request").inc()
            raise
        decisions = await self.price(request.sku_ids, request.date)
        metrics.REQUESTS.labels(protocol, "ok").inc()
        metrics.REQUEST_SECONDS.labels(protocol).observe(time.perf_counter() - started)
        if protocol == "v2":
            return v2_response(decisions, request, self.name)
        return v1_response(decisions, request, self.config.pricing.model_name)


# ---------------------------------------------------------------------------------------------------------
# python -m aigp.serving.transformer
# ---------------------------------------------------------------------------------------------------------
def build_parser() -> Any:
    """KServe's model-server arguments (``--model_name``, ``--http_port``, ...) plus the transformer's."""
    import argparse

    from kserve import model_server

    parser = argparse.ArgumentParser(parents=[model_server.parser], description="AIGP pricing transformer")
    # Not "--config": KServe parses sys.argv when model_server is imported, and would read it as an
    # abbreviation of its own --configure_logging.
    parser.add_argument("--pricing_config", default=None,
                        help="TransformerConfig YAML (default: $AIGP_PRICING_CONFIG)")
    parser.add_argument("--predictor_url", default=None, help="OpenAI API root of the LLM predictor "
                                                                "(default: $AIGP_PREDICTOR_URL)")
    parser.add_argument("--feature_server_url", default=None, help="Feast feature server "
                                                                     "(default: $AIGP_FEATURE_SERVER_URL)")
    parser.add_argument("--feature_data", default=None, help="embedded store source tables ($AIGP_FEATURE_DATA)")
    parser.add_argument("--feature_state_dir", default=None, help="embedded store state ($AIGP_FEATURE_STATE_DIR)")
    parser.add_argument("--pinned_version", default=None,
                        help="label every group with this model version instead of reading the registry (a local "
                             "predictor serving a model that is not registered; never in the cluster)")
    return parser


def config_from_args(args: Any, environ: Mapping[str, str] | None = None) -> TransformerConfig:
    return TransformerConfig.from_env(environ, args.pricing_config, predictor_url=args.predictor_url,
                                      feature_server_url=args.feature_server_url, feature_data=args.feature_data,
                                      feature_state_dir=args.feature_state_dir)


def validation_error_handler(request: Any, exc: Any) -> Any:
    """A v2 body that does not fit the Open Inference Protocol's schema: 400 with one line naming the first field
    at fault. FastAPI's own handler (422) echoes the offending value, and a NaN or Infinity there cannot be
    encoded: the client got a 500 and a reset connection."""
    from fastapi.responses import JSONResponse

    errors = list(exc.errors()) if hasattr(exc, "errors") else []
    # the body is InferenceRequest | bytes: name the problems with the InferenceRequest, not the bytes branch
    errors = [e for e in errors if "bytes" not in e.get("loc", ())] or errors
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "InferenceRequest")]
    field = ".".join(loc) or "request body"
    shown = f"={_shown(first['input'])}" if "input" in first and not isinstance(first["input"], dict | list) else ""
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    metrics.REQUESTS.labels("v2", "bad_request").inc()
    return JSONResponse(status_code=400, content={"error": f"{field}{shown}: {first.get('msg', 'invalid')}{more}"})


class RefuseBinaryTensors:
    """ASGI middleware: a request using the Open Inference Protocol's binary tensor extension (header
    ``inference-header-content-length``) is a 400. The transformer's inputs are JSON; KServe's decoder of the
    extension answers a bad header or JSON part with a 500 and a reset connection."""

    HEADER = b"inference-header-content-length"

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and any(k.lower() == self.HEADER for k, _ in scope.get("headers", ())):
            body = (b'{"error":"inference-header-content-length: the binary tensor extension is not supported; '
                    b'send the inputs as JSON"}')
            metrics.REQUESTS.labels("v2", "bad_request").inc()
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def install_error_handlers(app: Any) -> None:
    """400 with one line for bodies that do not fit the v2 schema, and for the binary tensor extension."""
    from fastapi.exceptions import RequestValidationError

    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_middleware(RefuseBinaryTensors)


def main(argv: Sequence[str] | None = None) -> None:
    from kserve import ModelServer, model_server

    args, _ = build_parser().parse_known_args(argv)
    install_error_handlers(model_server.app)
    resolver = pinned(args.pinned_version) if args.pinned_version else None
    model = PricingTransformer(args.model_name, config_from_args(args), resolver=resolver)
    model.load()
    # Move everything loaded so far (KServe, Feast, pandas, the knowledge base: ~10^6 objects) out of the cyclic
    # collector's reach: a full collection would otherwise walk them all in the middle of a request, the
    # long tail of a 256-SKU request that allocates tens of thousands of objects.
    gc.freeze()
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, enable_grpc=args.enable_grpc,
                workers=1).start([model])


def pinned(version: str) -> Resolver:
    """A resolver that answers ``version`` for every alias (no registry)."""
    return lambda name, ref: (version, "")


@contextlib.contextmanager
def serve_local_transformer(config: TransformerConfig, model_name: str = DEFAULT_MODEL_NAME, *, port: int | None = None,
                            pinned_version: str | None = None, env: Mapping[str, str] | None = None,
                            log_path: str | Path | None = None, timeout_s: float = 180.0) -> Iterator[str]:
    """Run ``python -m aigp.serving.transformer`` (as the InferenceService does) with ``config`` on a loopback
    port; yields its root URL (``http://127.0.0.1:<port>``) and stops it (SIGTERM) on exit."""
    import sys
    import tempfile

    import yaml

    from aigp.serving.predictor import free_port, serve_subprocess

    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="aigp-transformer-") as tmp:
        config_file = Path(tmp) / "transformer.yaml"
        config_file.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        argv = [sys.executable, "-m", "aigp.serving.transformer", f"--model_name={model_name}",
                f"--http_port={port}", "--enable_grpc=false", f"--pricing_config={config_file}"]
        if pinned_version:
            argv.append(f"--pinned_version={pinned_version}")
        with serve_subprocess(argv, lambda base: f"{base}/v1/models/{model_name}", port=port, env=env,
                              log_path=log_path, timeout_s=timeout_s) as base:
            yield base


if __name__ == "__main__":
    main()
