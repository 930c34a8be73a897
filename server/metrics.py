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

The request counts and latencies are plain Python numbers, turned into Prometheus families when
`/metrics` is scraped (`_RequestCollector`): `observe` runs once per request, 0.3-0.6 us here against
1.8-2.8 us through prometheus_client's Counter and Histogram (a lock each, label lookups). It is
called from the event loop's thread only (the middleware), so the numbers need no lock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The metrics of one app. `render()` is what `GET /metrics` returns."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._series: dict[tuple[str, str], _Series] = {}  # (method, endpoint) -> its counts
        self.registry.register(_RequestCollector(self._series))
        self.online_store_errors = Counter("fs_online_store_errors", "Online store failures (unreachable or too slow).",
                                           ["reason"], registry=self.registry)
        self.pushed_rows = Counter("fs_pushed_rows", "Rows accepted by POST /push/{source}.",
                                   ["source", "to"], registry=self.registry)

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency (per request: kept cheap, see the module docstring)."""
        series = self._series.get((method, endpoint))
        if series is None:
            series = self._series[(method, endpoint)] = _Series()
        counts = series.statuses
        counts[status] = counts.get(status, 0) + 1
        series.buckets[bisect_left(_BUCKETS, seconds)] += 1  # le: a value on a bound counts in its bucket
        series.total += seconds

    def render(self) -> bytes:
        return generate_latest(self.registry)



class _Series:
    """The requests of one (method, endpoint): count per status, latency histogram (non-cumulative), sum."""

    __slots__ = ("statuses", "buckets", "total")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.buckets = [0] * (len(_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0


class _RequestCollector:
    """fs_http_requests_total and fs_http_request_duration_seconds, read from the series at scrape time."""

    def __init__(self, series: dict[tuple[str, str], _Series]) -> None:
        self.series = series

    def describe(self) -> list[Metric]:
        return self._families({})

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(dict(self.series)))

    @staticmethod
    def _families(series: dict[tuple[str, str], _Series]) -> list[Metric]:
        requests = CounterMetricFamily("fs_http_requests", "HTTP requests answered, by endpoint and status.",
                                       labels=["method", "endpoint", "status"])
        latency = HistogramMetricFamily("fs_http_request_duration_seconds", "HTTP request latency, by endpoint.",
                                        labels=["method", "endpoint"])
        for (method, endpoint), s in series.items():
            for status, count in list(s.statuses.items()):
                requests.add_metric([method, endpoint, str(status)], count)
            cumulative, buckets = 0, []
            for bound, count in zip((*_BUCKETS, float("inf")), list(s.buckets)):
                cumulative += count
                buckets.append((_bound_text(bound), cumulative))
            latency.add_metric([method, endpoint], buckets, s.total)
        return [requests, latency]


def _bound_text(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
