"""Online lookup latency: featurestore's get_online_features against raw clients on the same data.

    .venv/bin/python benchmarks/online.py [--entities 100000] [--rounds 5]

Setup: 100,000 entities, 2 feature views x 5 features (10 features), written through the
OnlineStore contract to our own redis-server (on a free port) and to a SQLite file.

Contenders, in the same run, on the same server, on the same random entity ids:
- featurestore, Redis: `store.get_online_features(10 features, rows).to_dict()`;
- raw redis-py: one hash per entity with one field per feature (what a hand-written client
  would do): HMGET for batch 1, a pipeline of 100 HMGETs for batch 100, each field decoded to a
  Python value (msgpack);
- raw redis-py MGET of featurestore's own keys, decoded: our key layout read through redis-py
  (our reads speak MGET themselves, without redis-py's per-command machinery, so they can beat it);
- featurestore, SQLite vs a raw sqlite3 `SELECT key, value ... WHERE key IN (...)`, decoded.

Targets (issue 3): p50 <= 1.5x raw redis-py at batch 1 and at batch 100; SQLite within 2x raw.
"""

from __future__ import annotations

import argparse
import gc
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402
import pyarrow as pa  # noqa: E402
import redis  # noqa: E402

from featurestore import Entity, FeatureStore, FeatureView, Field, Float64, Int64, PushSource  # noqa: E402
from featurestore.catalog import Catalog  # noqa: E402
from featurestore.online.encoding import HEADER  # noqa: E402
from tests.redis_server import start_redis  # noqa: E402

FEATURES = {
    "driver_hourly": [
        ("conv_rate", Float64),
        ("acc_rate", Float64),
        ("avg_daily_trips", Int64),
        ("rating", Float64),
        ("cancellations", Int64),
    ],
    "driver_daily": [
        ("earnings", Float64),
        ("hours_online", Float64),
        ("trips_today", Int64),
        ("distance_km", Float64),
        ("complaints", Int64),
    ],
}
REFS = [f"{view}:{name}" for view, fields in FEATURES.items() for name, _ in fields]
RAW_FIELDS = [name for fields in FEATURES.values() for name, _ in fields]


def catalog() -> Catalog:
    driver = Entity(name="driver", join_keys=["driver_id"])
    src = PushSource(name="driver_push")
    views = {
        name: FeatureView(name=name, entities=[driver], source=src, schema=[Field(n, t) for n, t in fields])
        for name, fields in FEATURES.items()
    }
    return Catalog(entities={"driver": driver}, sources={"driver_push": src}, views=views)


def open_store(root: Path, online: str) -> FeatureStore:
    root.mkdir(parents=True)
    (root / "featurestore.toml").write_text(f'project = "bench"\n{online}')
    store = FeatureStore(root)
    store.apply(catalog())
    return store


def make_data(n: int) -> dict[str, pa.Table]:
    rng = random.Random(1)
    now = datetime.now(timezone.utc)
    ids = list(range(n))
    tables = {}
    for view, fields in FEATURES.items():
        cols = {"driver_id": pa.array(ids, pa.int64())}
        for name, dtype in fields:
            cols[name] = (
                pa.array([rng.random() for _ in ids])
                if dtype is Float64
                else pa.array([rng.randrange(1000) for _ in ids], pa.int64())
            )
        cols["__event_ts"] = pa.array([now] * n, pa.timestamp("us", tz="UTC"))
        tables[view] = pa.table(cols)
    return tables


def load(store: FeatureStore, tables: dict[str, pa.Table]) -> float:
    began = time.perf_counter()
    rows = sum(store.online_store.write(store.catalog.view(v), t) for v, t in tables.items())
    return rows / (time.perf_counter() - began)


def load_raw_hashes(client: redis.Redis, tables: dict[str, pa.Table], n: int) -> None:
    columns = {
        name: t.column(name).to_pylist()
        for t in tables.values()
        for name in t.column_names
        if name in RAW_FIELDS
    }
    pack = msgpack.packb
    for lo in range(0, n, 5_000):
        pipe = client.pipeline(transaction=False)
        for i in range(lo, min(n, lo + 5_000)):
            pipe.hset(f"raw:{i}", mapping={f: pack(columns[f][i]) for f in RAW_FIELDS})
        pipe.execute()


def measure(fn: Callable[[list[int]], object], batches: list[list[int]]) -> list[float]:
    out = []
    for ids in batches:
        t = time.perf_counter()
        fn(ids)
        out.append(time.perf_counter() - t)
    return out


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1e6


def run(
    contenders: dict[str, Callable[[list[int]], object]], n: int, batch: int, iterations: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """p50/p99 in us; contenders take turns in rounds over the same ids, so drift hits all alike."""
    rng = random.Random(batch)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm up
        measure(fn, [rng.sample(range(n), batch) for _ in range(200)])
    for _ in range(rounds):
        batches = [rng.sample(range(n), batch) for _ in range(iterations // rounds)]
        for name, fn in contenders.items():
            times[name] += measure(fn, batches)
    return {name: (percentile(t, 0.5), percentile(t, 0.99)) for name, t in times.items()}


def check(same_answer: list[Callable[[list[int]], object]], n: int) -> None:
    """Every contender returns the same values (so we compare equal work)."""
    ids = random.Random(0).sample(range(n), 100)
    answers = [fn(ids) for fn in same_answer]
    for a in answers[1:]:
        assert a == answers[0], "contenders disagree"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=5_000, help="lookups per contender at batch 1")
    args = parser.parse_args()
    n = args.entities

    server = start_redis()
    if server is None:
        print("no redis-server: install it (apt-get install redis-server)")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-online-"))
    try:
        tables = make_data(n)
        redis_store = open_store(tmp / "redis", f'[online]\ntype = "redis"\nurl = "{server.url}"\n')
        sqlite_store = open_store(tmp / "sqlite", '[online]\ntype = "sqlite"\npath = "online.db"\n')
        print(f"{n:,} entities x {len(FEATURES)} views x {len(REFS) // len(FEATURES)} features")
        print(
            f"write through OnlineStore.write: Redis {load(redis_store, tables):,.0f} rows/s, "
            f"SQLite {load(sqlite_store, tables):,.0f} rows/s"
        )
        client = redis.Redis.from_url(server.url)
        load_raw_hashes(client, tables, n)
        raw_sqlite = sqlite3.connect(sqlite_store.online_store.path, isolation_level=None)
        gc.collect()
        gc.freeze()

        unpackb, header = msgpack.unpackb, HEADER.size
        prefixes = [f"bench:{view}:".encode() for view in FEATURES]

        def ours_redis(ids):
            return redis_store.get_online_features(REFS, [{"driver_id": i} for i in ids]).to_dict()

        def ours_sqlite(ids):
            return sqlite_store.get_online_features(REFS, [{"driver_id": i} for i in ids]).to_dict()

        def raw_hmget_1(ids):
            return [unpackb(v) for v in client.hmget(f"raw:{ids[0]}", RAW_FIELDS)]

        def raw_hmget_pipeline(ids):
            pipe = client.pipeline(transaction=False)
            for i in ids:
                pipe.hmget(f"raw:{i}", RAW_FIELDS)
            return [[unpackb(v) for v in row] for row in pipe.execute()]

        def raw_mget(ids):
            keys = [p + str(i).encode() for p in prefixes for i in ids]
            return [unpackb(b[header:]) for b in client.mget(keys)]

        def raw_select(ids):
            keys = [p + str(i).encode() for p in prefixes for i in ids]
            sql = f"SELECT key, value FROM feature_rows WHERE key IN ({','.join('?' * len(keys))})"
            found = dict(raw_sqlite.execute(sql, keys).fetchall())
            return [unpackb(found[k][header:]) for k in keys]

        def as_rows(answer):  # to_dict columns -> per-entity feature rows, to compare with the raw answers
            return [[answer[name][r] for name in RAW_FIELDS] for r in range(len(answer["driver_id"]))]

        check(
            [lambda ids: as_rows(ours_redis(ids)), raw_hmget_pipeline, lambda ids: as_rows(ours_sqlite(ids))],
            n,
        )

        results = []
        for batch, iterations, raw_name, raw_fn in (
            (1, args.iterations, "raw redis-py HMGET", raw_hmget_1),
            (100, args.iterations // 5, "raw redis-py pipeline of 100 HMGET", raw_hmget_pipeline),
        ):
            contenders = {
                "featurestore Redis": ours_redis,
                raw_name: raw_fn,
                "raw redis-py MGET (our keys)": raw_mget,
                "featurestore SQLite": ours_sqlite,
                "raw sqlite3 SELECT": raw_select,
            }
            stats = run(contenders, n, batch, iterations, args.rounds)
            print(f"\nbatch {batch} ({iterations:,} lookups each)")
            print(f"  {'':38s} {'p50 us':>9s} {'p99 us':>9s}")
            for name, (p50, p99) in stats.items():
                print(f"  {name:38s} {p50:9.1f} {p99:9.1f}")
            redis_ratio = stats["featurestore Redis"][0] / stats[raw_name][0]
            sqlite_ratio = stats["featurestore SQLite"][0] / stats["raw sqlite3 SELECT"][0]
            floor_ratio = stats["featurestore Redis"][0] / stats["raw redis-py MGET (our keys)"][0]
            results.append((f"batch {batch}: Redis p50 vs {raw_name}", redis_ratio, 1.5))
            results.append((f"batch {batch}: SQLite p50 vs raw sqlite3 SELECT", sqlite_ratio, 2.0))
            print(
                f"  featurestore Redis / raw MGET of our keys: {floor_ratio:.2f}x (below 1: our own MGET beats redis-py's)"
            )

        print("\ntargets")
        ok = True
        for label, ratio, target in results:
            passed = ratio <= target
            ok &= passed
            print(f"  {label:58s} {ratio:5.2f}x  (target <= {target}x)  {'PASS' if passed else 'FAIL'}")
        print(f"\nmedian of targets' ratios: {statistics.median(r for _, r, _ in results):.2f}x")
        redis_store.close()
        sqlite_store.close()
        return 0 if ok else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
