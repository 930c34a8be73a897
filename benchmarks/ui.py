"""The web UI's catalog page at scale: server time and size of `GET /ui/catalog` with 1,000 feature views.

    .venv/bin/python benchmarks/ui.py [--views 1000] [--features 5] [--requests 30] [--json out.json]

Setup: a repo in a temp folder with `--views` feature views of `--features` features each (so the
page lists views x features feature rows), 10 entities, 20 Parquet sources, 20 feature services,
owners, tags and descriptions on everything, applied to its registry (not materialized: the page
reads the watermarks either way). Then, in-process through the ASGI app (httpx ASGITransport, no
socket), after warm-up: `--requests` requests each of the catalog page, the page of a search
(`?q=view_0`: it matches every view and feature, so each section is full), the search's results
fragment (`/ui/catalog/results?q=`, what the page's script fetches as you type), a view's page and
the JSON `GET /catalog/views` of the same views (the in-run reference: what the API costs for the
same catalog): median and p95 of the wall time and of the UI's own `Server-Timing`, and the size of
each answer. A catalog this large shows at most ROWS_SHOWN rows per section and leaves the search
to the server. The first request after an apply, and the first search, work out the rows (reported,
not targets).

Targets (issue 17): median server time <= 100 ms for the catalog page, the search page and the
results fragment; the page's HTML plus its assets (ui.css, ui.js, favicon) <= 200 KB, for the page
and the search page. Prints PASS or FAIL; exits 1 on FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402

from tests.repo_builder import make_repo  # noqa: E402

TARGET_MS = 100.0
BYTES_LIMIT = 200 * 1024  # a page's HTML and its assets
SEARCH = "view_0"
SOURCES = 20
ENTITIES = 10
SERVICES = 20

DEFINITIONS = """
from datetime import timedelta
from featurestore import Entity, FeatureService, FeatureView, Field, Float64, Int64, ParquetSource, String

VIEWS, FEATURES = {views}, {features}
TYPES = [Float64, Int64, Float64, String, Float64]
entities = [Entity(name=f"entity_{{e}}", join_keys=[f"key_{{e}}"], description=f"Entity number {{e}}",
                   owner="data-eng@example.com", tags={{"domain": f"d{{e % 3}}"}}) for e in range({entities})]
sources = [ParquetSource(name=f"source_{{s}}", path=f"data/source_{{s}}.parquet", timestamp_field="event_timestamp",
                         description=f"Batch table {{s}}") for s in range({sources})]
views = []
for i in range(VIEWS):
    e = entities[i % len(entities)]
    views.append(FeatureView(
        name=f"view_{{i:04d}}", entities=[e], source=sources[i % len(sources)], ttl=timedelta(days=1 + i % 30),
        schema=[Field(f"key_{{i % len(entities)}}", Int64)]
        + [Field(f"f{{j}}", TYPES[j % len(TYPES)], description=f"Feature {{j}} of view {{i}}", tags={{"pii": "no"}})
           for j in range(FEATURES)],
        description=f"View number {{i}}, refreshed hourly by team {{i % 7}}", owner=f"team{{i % 7}}@example.com",
        tags={{"team": f"t{{i % 7}}", "tier": "gold" if i % 10 == 0 else "silver"}},
    ))
services = [FeatureService(name=f"service_{{k}}", features=views[k::{services}][:10], description=f"Service {{k}}")
            for k in range({services})]
for i, v in enumerate(views):
    globals()[v.name] = v
for k, s in enumerate(services):
    globals()[s.name] = s
for e in entities:
    globals()[e.name] = e
for s in sources:
    globals()[s.name] = s
"""


def build_repo(root: Path, views: int, features: int) -> Path:
    now = datetime.now(timezone.utc)
    data = {}
    for s in range(SOURCES):
        columns: dict[str, Any] = {f"key_{e}": pa.array([1, 2], pa.int64()) for e in range(ENTITIES)}
        columns["event_timestamp"] = pa.array([now - timedelta(hours=1), now], pa.timestamp("us", tz="UTC"))
        types = [pa.float64(), pa.int64(), pa.float64(), pa.string(), pa.float64()]
        for j in range(features):
            t = types[j % len(types)]
            columns[f"f{j}"] = pa.array(["a", "b"] if t == pa.string() else [1, 2], t)
        data[f"data/source_{s}.parquet"] = pa.table(columns)
    text = DEFINITIONS.format(
        views=views, features=features, entities=ENTITIES, sources=SOURCES, services=SERVICES
    )
    return make_repo(root, {"features.py": text}, data, project="ui_bench")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed(client: Any, url: str, n: int) -> tuple[list[float], list[float], int]:
    """Wall times (ms), Server-Timing durations (ms) and the body size of `n` GETs of `url`."""
    walls, servers, size = [], [], 0
    for _ in range(n):
        began = time.perf_counter()
        r = await client.get(url)
        walls.append((time.perf_counter() - began) * 1000)
        r.raise_for_status()
        size = len(r.content)
        timing = r.headers.get("server-timing", "")
        if "dur=" in timing:
            servers.append(float(timing.split("dur=")[1].split(",")[0]))
    return walls, servers, size


def figures_of(walls: list[float], servers: list[float], size: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "wall_ms": {"median": statistics.median(walls), "p95": quantile(walls, 0.95)},
        "bytes": size,
    }
    if servers:
        out["server_ms"] = {"median": statistics.median(servers), "p95": quantile(servers, 0.95)}
    return out


async def measure(store: Any, requests: int) -> dict[str, Any]:
    import httpx

    from featurestore.server import create_app

    app = create_app(store)
    view = sorted(store.catalog.views)[len(store.catalog.views) // 2]
    urls = {
        "page": "/ui/catalog",
        "search": f"/ui/catalog?q={SEARCH}",
        "results": f"/ui/catalog/results?q={SEARCH}",
        "view": f"/ui/views/{view}",
        "api": "/catalog/views",
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

        async def first_ones() -> tuple[dict[str, float], httpx.Response]:
            """The first page (works out the rows) and the first search (their search text), in ms."""
            cold = {}
            for key in ("page", "search"):
                began = time.perf_counter()
                first = await client.get(urls[key])
                first.raise_for_status()
                cold[key] = (time.perf_counter() - began) * 1000
            return cold, first

        cold, first = await first_ones()
        assets = 0
        for name in ("ui.css", "ui.js", "favicon.svg"):
            marker = f"/ui/static/{name}?v="
            start = first.text.index(marker)
            assets += len((await client.get(first.text[start : first.text.index('"', start)])).content)
        out: dict[str, Any] = {"first_page_ms": cold["page"], "first_search_ms": cold["search"]}
        for key, url in urls.items():
            await timed(client, url, 5)  # warm-up
            out[key] = figures_of(*await timed(client, url, requests))
        # The same definitions applied again: a new catalog, in a process whose templates are compiled.
        await asyncio.to_thread(store.apply)
        cold, _ = await first_ones()
        out["applied_page_ms"], out["applied_search_ms"] = cold["page"], cold["search"]
    out["assets_bytes"] = assets
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=1000)
    parser.add_argument("--features", type=int, default=5)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()

    import warnings

    warnings.filterwarnings("ignore", message=".*httpx.*")
    from featurestore import FeatureStore

    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        root = build_repo(Path(tmp) / "repo", args.views, args.features)
        store = FeatureStore(root)
        store.apply()
        setup = time.perf_counter() - began
        catalog = store.catalog
        shape = (
            f"{len(catalog.views):,} views x {args.features} features, {len(catalog.entities)} entities, "
            f"{len(catalog.sources)} sources, {len(catalog.services)} services (applied in {setup:.1f}s)"
        )
        figures = asyncio.run(measure(store, args.requests))
        store.close()

    print(f"UI catalog page: {shape}; {args.requests} requests each after warm-up, in-process")
    print(f"  {'':40s} {'median':>9s} {'p95':>9s} {'bytes':>11s}")
    labels = {
        "page": "GET /ui/catalog",
        "search": f"GET /ui/catalog?q={SEARCH}",
        "results": f"GET /ui/catalog/results?q={SEARCH}",
        "view": "GET /ui/views/{name}",
        "api": "GET /catalog/views JSON",
    }
    for key, label in labels.items():
        f = figures[key]
        for kind in ("server", "wall"):
            ms = f.get(f"{kind}_ms")
            if ms is not None:
                print(
                    f"  {label + f' ({kind})':40s} {ms['median']:7.1f}ms {ms['p95']:7.1f}ms {f['bytes']:11,d}"
                )
    print(
        f"  first GET /ui/catalog (works out the rows), then the first search (their search text): "
        f"{figures['first_page_ms']:.0f} ms, {figures['first_search_ms']:.0f} ms; after an apply in a warm "
        f"process: {figures['applied_page_ms']:.0f} ms, {figures['applied_search_ms']:.0f} ms"
    )
    print(f"  assets (ui.css + ui.js + favicon.svg): {figures['assets_bytes']:,} bytes")

    checks = []
    for key in ("page", "search", "results"):
        median = figures[key]["server_ms"]["median"]
        checks.append(
            (f"{labels[key]} median server time {median:.1f} ms (<= {TARGET_MS:.0f} ms)", median <= TARGET_MS)
        )
    for key in ("page", "search"):
        size = figures[key]["bytes"] + figures["assets_bytes"]
        checks.append(
            (
                f"{labels[key]} HTML + assets {size / 1024:.1f} KB (<= {BYTES_LIMIT // 1024} KB)",
                size <= BYTES_LIMIT,
            )
        )
    print("\ntargets")
    for label, passed in checks:
        print(f"  {label}: {'PASS' if passed else 'FAIL'}")
    figures["shape"] = shape
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if all(passed for _, passed in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
