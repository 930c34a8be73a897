"""Prometheus metrics of one app, in its own CollectorRegistry (several apps can live in one process).

Exposed at `GET /metrics` in the Prometheus text format:

- `fs_http_requests_total{method, endpoint, status}`: requests answered, by route template
  (`/push/{source}`, not the raw path, so the label set stays small; unmatched paths are `<unmatched>`).
- `fs_http_request_duration_seconds{method, endpoint}`: latency histogram, from the first byte the app
  sees to the last one it sends.
- `fs_online_store_errors_total{reason}`: lookups or pushes that failed because the online store was
  unreachable (`unavailable`) or too slow (`timeout`).
- `fs_pushed_rows_total{source, to}`: rows accepted by `POST /push/{source}`.

`server.middleware.ServerMiddleware` times and counts the requests. With `fs serve --workers N`, each worker process counts its own requests (a scrape reaches one worker).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The metrics of one app. `render()` is what `GET /metrics` returns."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("fs_http_requests", "HTTP requests answered, by endpoint and status.",
                                ["method", "endpoint", "status"], registry=self.registry)
        self.latency = Histogram("fs_http_request_duration_seconds", "HTTP request latency, by endpoint.",
                                 ["method", "endpoint"], buckets=_BUCKETS, registry=self.registry)
        self.online_store_errors = Counter("fs_online_store_errors", "Online store failures (unreachable or too slow).",
                                           ["reason"], registry=self.registry)
        self.pushed_rows = Counter("fs_pushed_rows", "Rows accepted by POST /push/{source}.",
                                   ["source", "to"], registry=self.registry)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency (label children are cached: this is per request)."""
        key = (method, endpoint, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(method, endpoint, str(status)), self.latency.labels(method, endpoint))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

