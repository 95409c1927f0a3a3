"""Prometheus counters of the pricing transformer, in the process-wide registry KServe's ``/metrics`` serves.

Named ``aigp_serving_*`` (the monitoring job's gauges over the decisions log are ``aigp_pricing_*``): these
count what happens live, request by request.

- ``aigp_serving_decisions_total{group, model_version, outcome}``: outcome ``model`` (the model's action,
  inside A_safe), ``projected`` (the model's action projected onto A_safe), ``fallback`` (held yesterday's
  discount) or ``unpriced`` (discount in effect unknown: nothing changed);
- ``aigp_serving_fallbacks_total{group, reason}``: fallbacks by :class:`aigp.decisions.FallbackReason`;
- ``aigp_serving_predictor_failures_total{group, reason, retried}``: failed predictor attempts (timeout, error,
  unparsable output); ``retried="true"`` for a first attempt that got its one retry, ``"false"`` for a retry
  that failed too (which then became a fallback);
- ``aigp_serving_requests_total{protocol, status}`` and ``aigp_serving_request_seconds{protocol}``:
  client requests (``status`` ``ok`` or ``bad_request``) and their latency.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from aigp.decisions import FallbackReason
from aigp.pricing import Decision

DECISIONS = Counter("aigp_serving_decisions", "pricing decisions by outcome",
                    ["group", "model_version", "outcome"])
FALLBACKS = Counter("aigp_serving_fallbacks", "decisions that fell back to holding yesterday's discount, by reason",
                    ["group", "reason"])
PREDICTOR_FAILURES = Counter("aigp_serving_predictor_failures", "failed predictor attempts by reason",
                             ["group", "reason", "retried"])
REQUESTS = Counter("aigp_serving_requests", "client requests to the pricing transformer", ["protocol", "status"])
REQUEST_SECONDS = Histogram("aigp_serving_request_seconds", "pricing request latency", ["protocol"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))


class PrometheusObserver:
    """The pricing engine's observer that counts into the counters above."""

    def decided(self, decision: Decision) -> None:
        DECISIONS.labels(decision.group, decision.model_version, decision.outcome).inc()
        if decision.fallback:
            FALLBACKS.labels(decision.group, decision.fallback_reason.value).inc()

    def attempt_failed(self, group: str, reason: FallbackReason, retried: bool) -> None:
        PREDICTOR_FAILURES.labels(group, reason.value, "true" if retried else "false").inc()
