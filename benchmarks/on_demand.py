"""On-demand feature views: what a one-line row function adds online, and its rate offline.

    .venv/bin/python benchmarks/on_demand.py [--entities 100000] [--rows 500000] [--rounds 5]

Setup: a repo on disk (the function is imported from its file, as in production) with a view of
100,000 drivers x 2 features in a Parquet source, written online to our own redis-server (on a free
port), a RequestSource with `distance_km`, and the on-demand view
`expected_minutes = distance_km / max(conv_rate or 0.1, 0.1)` (row form), and the same with an
arrow vectorized form.

- Online: p50 of `get_online_features` of the on-demand feature minus p50 of a lookup of its input
  feature alone (same entity rows, request values included, same single round trip), per row, at
  batch 1 and 100. Target (issue 13): <= 20 us per row.
- Offline: `get_historical_features` over `--rows` entity rows of the on-demand feature (row form,
  and vectorized), against the same training set of its input feature alone: rows per second of
  the transform (rows / extra time) and of the whole training set. Target: >= 200k rows/s.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from featurestore import FeatureStore  # noqa: E402
from tests.redis_server import start_redis  # noqa: E402

DEFINITIONS = """
import pyarrow.compute as pc
from featurestore import (Entity, FeatureView, Field, Float64, Int64, ParquetSource, RequestSource,
                          on_demand_feature_view)

driver = Entity(name="driver", join_keys=["driver_id"])
stats = ParquetSource(name="stats", path="data/stats.parquet", timestamp_field="event_timestamp")
driver_hourly = FeatureView(name="driver_hourly", entities=[driver], source=stats,
                            schema=[Field("driver_id", Int64), Field("conv_rate", Float64),
                                    Field("acc_rate", Float64)])
trip = RequestSource(name="trip", schema=[Field("distance_km", Float64)])


@on_demand_feature_view(sources=[driver_hourly[["conv_rate"]], trip], schema=[Field("expected_minutes", Float64)])
def trip_estimates(row: dict) -> dict:
    return {"expected_minutes": row["distance_km"] / max(row["conv_rate"] or 0.1, 0.1)}


@on_demand_feature_view(sources=[driver_hourly[["conv_rate"]], trip], schema=[Field("fast_minutes", Float64)])
def trip_estimates_fast(row: dict) -> dict:  # null in, null out, as its arrow form (apply checks they agree)
    d = row["distance_km"]
    return {"fast_minutes": None if d is None else d / max(row["conv_rate"] or 0.1, 0.1)}


@trip_estimates_fast.vectorized(mode="arrow")
def trip_estimates_arrow(t):
    rate = pc.fill_null(t["conv_rate"], 0.1)  # `x or 0.1`: null and 0.0 read as 0.1
    rate = pc.max_element_wise(pc.if_else(pc.equal(rate, 0.0), 0.1, rate), 0.1)
    return {"fast_minutes": pc.divide(t["distance_km"], rate)}
"""

ROW_FEATURE = ["trip_estimates:expected_minutes"]
VECTOR_FEATURE = ["trip_estimates_fast:fast_minutes"]
INPUT_FEATURE = ["driver_hourly:conv_rate"]


def build(root: Path, redis_url: str, n: int) -> FeatureStore:
    root.mkdir(parents=True)
    (root / "featurestore.toml").write_text(
        f'project = "bench"\n[online]\ntype = "redis"\nurl = "{redis_url}"\nkey_prefix = "odfvbench"\n'
    )
    (root / "features.py").write_text(textwrap.dedent(DEFINITIONS))
    rng = np.random.default_rng(1)
    when = datetime.now(timezone.utc) - timedelta(hours=1)
    table = pa.table(
        {
            "driver_id": pa.array(np.arange(n), pa.int64()),
            "conv_rate": pa.array(rng.random(n)),
            "acc_rate": pa.array(rng.random(n)),
            "event_timestamp": pa.array([when] * n, pa.timestamp("us", tz="UTC")),
        }
    )
    (root / "data").mkdir()
    pq.write_table(table, root / "data" / "stats.parquet")
    store = FeatureStore(root)
    store.apply()
    online = table.rename_columns(["driver_id", "conv_rate", "acc_rate", "__event_ts"])
    store.online_store.write(store.catalog.view("driver_hourly"), online)
    return store


def p50(fn: Callable[[list[dict]], object], batches: list[list[dict]]) -> float:
    times = []
    for rows in batches:
        t = time.perf_counter()
        fn(rows)
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2] * 1e6


def online(store: FeatureStore, n: int, batch: int, iterations: int, rounds: int) -> tuple[float, float]:
    """(p50 of the input lookup, p50 of the on-demand lookup) in us, taking turns in rounds."""
    rng = random.Random(batch)

    def rows() -> list[dict]:
        return [{"driver_id": rng.randrange(n), "distance_km": rng.random() * 30} for _ in range(batch)]

    def plain(r: list[dict]) -> object:
        return store.get_online_features(INPUT_FEATURE, r).to_dict()

    def computed(r: list[dict]) -> object:
        return store.get_online_features(ROW_FEATURE, r).to_dict()

    for fn in (plain, computed):
        for _ in range(200):
            fn(rows())
    base, odfv = [], []
    for _ in range(rounds):
        batches = [rows() for _ in range(iterations // rounds)]
        base.append(p50(plain, batches))
        odfv.append(p50(computed, batches))
    return float(np.median(base)), float(np.median(odfv))


def offline(store: FeatureStore, n: int, rows: int) -> dict[str, float]:
    """Seconds of each training set (best of 3) over the same entity_df."""
    rng = np.random.default_rng(2)
    now = datetime.now(timezone.utc)
    entity_df = pa.table(
        {
            "driver_id": pa.array(rng.integers(0, n, rows), pa.int64()),
            "distance_km": pa.array(rng.random(rows) * 30),
            "event_timestamp": pa.array([now] * rows, pa.timestamp("us", tz="UTC")),
        }
    )
    out = {}
    answers = {}
    for label, features in (
        ("input", INPUT_FEATURE),
        ("row form", ROW_FEATURE),
        ("vectorized", VECTOR_FEATURE),
    ):
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            table = store.get_historical_features(entity_df, features).to_arrow()
            best = min(best, time.perf_counter() - t)
        out[label] = best
        answers[label] = table.column(table.num_columns - 1)
    row, vec = answers["row form"].to_numpy(), answers["vectorized"].to_numpy()
    assert np.allclose(row, vec, rtol=1e-12), "the row and vectorized forms disagree"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=500_000, help="entity rows of the training sets")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=5_000, help="lookups per contender at batch 1")
    args = parser.parse_args()
    server = start_redis()
    if server is None:
        print("no redis-server: install it (apt-get install redis-server)")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-odfv-"))
    try:
        store = build(tmp / "repo", server.url, args.entities)
        gc.collect()
        gc.freeze()
        results = []
        print(f"{args.entities:,} drivers; one-line row function; Redis on a free port")
        print(f"\nonline p50 (us)            {'input only':>11s} {'on-demand':>10s} {'overhead/row':>13s}")
        for batch, iterations in ((1, args.iterations), (100, args.iterations // 5)):
            base, odfv = online(store, args.entities, batch, iterations, args.rounds)
            per_row = (odfv - base) / batch
            print(f"  batch {batch:<4d}                {base:11.1f} {odfv:10.1f} {per_row:13.2f}")
            results.append((f"online overhead per row, batch {batch} (us)", per_row, 20.0, "<="))
        secs = offline(store, args.entities, args.rows)
        print(f"\noffline, {args.rows:,} entity rows (best of 3)")
        print(f"  {'':24s} {'seconds':>8s} {'rows/s':>12s} {'transform rows/s':>17s}")
        for label in ("input", "row form", "vectorized"):
            total = args.rows / secs[label]
            extra = secs[label] - secs["input"]
            transform = args.rows / extra if extra > 0 else float("inf")
            shown = "" if label == "input" else f"{transform:17,.0f}"
            print(f"  {label:24s} {secs[label]:8.3f} {total:12,.0f} {shown}")
            if label != "input":
                results.append((f"offline {label}: transform rows/s", transform, 200_000.0, ">="))
                results.append((f"offline {label}: training set rows/s", total, 200_000.0, ">="))
        print("\ntargets")
        ok = True
        for label, value, target, sense in results:
            passed = value <= target if sense == "<=" else value >= target
            ok &= passed
            print(
                f"  {label:48s} {value:12,.2f}  (target {sense} {target:,.0f})  {'PASS' if passed else 'FAIL'}"
            )
        store.close()
        return 0 if ok else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
