"""Prometheus metrics of one app, in its own CollectorRegistry (several apps can live in one process).

Exposed at `GET /metrics` in the Prometheus text format:

- `fs_http_requests_total{method, endpoint, status}`: requests answered, by route template
  (`/push/{source}`, not the raw path, so the label set stays small; unmatched paths are `<unmatched>`).
- `fs_http_request_duration_seconds{method, endpoint}`: latency histogram, from the first byte the app
  sees to the last one it sends.
- `fs_online_store_errors_total{reason}`: lookups or pushes that failed because the online store was
  unreachable (`unavailable`) or too slow (`timeout`).
- `fs_pushed_rows_total{source, to}`: rows accepted by `POST /push/{source}`.

`featurestore.server.middleware.ServerMiddleware` times and counts the requests.

**Several workers.** With `fs serve --workers N`, a scrape reaches one worker process, yet must show
the counts of all of them (a counter that jumps between workers' values reads as resets to
Prometheus). So each worker of such a server is given one shared folder (`Metrics(shared_dir)`,
`$FS_METRICS_DIR`): it writes a snapshot of its own families there every `PUBLISH_SECONDS`, when it
stops, and when it is scraped; a scrape answers the sum of its own counts, as they are, and every
other snapshot in the folder (`_created` times: the earliest). Counts of the other workers are thus
up to `PUBLISH_SECONDS` old. The snapshot of a worker that died stays and keeps counting in the
sums, so totals never go down (as prometheus_client's multiprocess mode does for counters). Each
process writes only its own file, named by pid and a random part (a later process with the same pid
gets a file of its own), and replaces it whole (write, then rename), so a reader never sees half a
snapshot.

The request counts and latencies are plain Python numbers, turned into Prometheus families when
`/metrics` is scraped (`_RequestCollector`): `observe` runs once per request, 0.3-0.6 us here against
1.8-2.8 us through prometheus_client's Counter and Histogram (a lock each, label lookups). It is
called from the event loop's thread only (the middleware), so the numbers need no lock.
"""

from __future__ import annotations

import logging
import os
import secrets
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

log = logging.getLogger("featurestore.server")

PUBLISH_SECONDS = 1.0  # how often a worker of a multi-worker server writes its snapshot
SNAPSHOTS = "worker-*.json"  # the snapshot files in a shared folder

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The metrics of one app. `render()` is what `GET /metrics` returns."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, shared_dir: str | Path | None = None) -> None:
        """`shared_dir`: the folder the workers of one multi-worker server share (module docstring);
        None: this process's counts only."""
        self.shared = None if shared_dir is None else _Snapshots(Path(shared_dir))
        self.registry = CollectorRegistry(auto_describe=True)
        self._series: dict[tuple[str, str], _Series] = {}  # (method, endpoint) -> its counts
        self.registry.register(_RequestCollector(self._series))
        self.online_store_errors = Counter(
            "fs_online_store_errors",
            "Online store failures (unreachable or too slow).",
            ["reason"],
            registry=self.registry,
        )
        self.pushed_rows = Counter(
            "fs_pushed_rows",
            "Rows accepted by POST /push/{source}.",
            ["source", "to"],
            registry=self.registry,
        )

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
        """The Prometheus text of this process's counts, or, with a shared folder, of every worker's."""
        if self.shared is None:
            return generate_latest(self.registry)
        mine = _snapshot(self.registry.collect())
        self._write(mine)  # fresh for the other workers' scrapes too
        return generate_latest(
            _Summed([mine, *self.shared.others()])
        )  # ours as counted now, even if unwritten

    def publish(self) -> None:
        """Write this process's snapshot to the shared folder (a no-op without one). Call it from the
        event loop's thread, which is the one that counts (the snapshot reads the counts unlocked).
        A failed write is logged, never raised: scrapes and shutdown go on without it."""
        if self.shared is not None:
            self._write(_snapshot(self.registry.collect()))

    def _write(self, snapshot: list[dict[str, Any]]) -> None:
        try:
            self.shared.write(snapshot)  # type: ignore[union-attr]
        except Exception as e:  # noqa: BLE001 - e.g. the folder was removed: others' scrapes miss our latest
            log.warning("metrics: cannot write this worker's snapshot: %s", e)


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
        requests = CounterMetricFamily(
            "fs_http_requests",
            "HTTP requests answered, by endpoint and status.",
            labels=["method", "endpoint", "status"],
        )
        latency = HistogramMetricFamily(
            "fs_http_request_duration_seconds",
            "HTTP request latency, by endpoint.",
            labels=["method", "endpoint"],
        )
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


# -- several workers: a snapshot file per process, summed at scrape time -----------------------------


class _Snapshots:
    """The shared folder of a multi-worker server: this process's snapshot file, and reading them all."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        name = f"worker-{os.getpid()}-{secrets.token_hex(4)}"
        self.path = folder / f"{name}.json"
        self._partial = folder / f".{name}.tmp"  # not *.json: never read

    def write(self, snapshot: list[dict[str, Any]]) -> None:
        self._partial.write_bytes(orjson.dumps(snapshot))
        os.replace(self._partial, self.path)

    def others(self) -> list[list[dict[str, Any]]]:
        """The snapshots of the other processes (of those that died too)."""
        out = []
        for path in sorted(self.folder.glob(SNAPSHOTS)):
            if path == self.path:
                continue
            try:
                out.append(orjson.loads(path.read_bytes()))
            except (OSError, orjson.JSONDecodeError) as e:  # not ours, or removed meanwhile: leave it out
                log.warning("metrics: skipping %s: %s", path, e)
        return out


def _snapshot(families: Iterable[Metric]) -> list[dict[str, Any]]:
    """Metric families as plain data: what a snapshot file holds, and what `_Summed` adds up."""
    return [
        {
            "name": f.name,
            "help": f.documentation,
            "type": f.type,
            "samples": [[s.name, s.labels, s.value] for s in f.samples],
        }
        for f in families
    ]


class _Summed:
    """Snapshots of several processes as one collector: sample values summed by (name, labels), except
    `_created` times, which take the earliest. Families keep the order they first appear in."""

    def __init__(self, snapshots: list[list[dict[str, Any]]]) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        families: dict[str, tuple[dict[str, Any], dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = {}
        for snapshot in self.snapshots:
            for family in snapshot:
                _, values = families.setdefault(family["name"], (family, {}))
                for name, labels, value in family["samples"]:
                    key = (name, tuple(labels.items()))
                    old = values.get(key)
                    if old is None:
                        values[key] = value
                    else:
                        values[key] = min(old, value) if name.endswith("_created") else old + value
        for family, values in families.values():
            metric = Metric(family["name"], family["help"], family["type"])
            for (name, labels), value in values.items():
                metric.add_sample(name, dict(labels), value)
            yield metric
