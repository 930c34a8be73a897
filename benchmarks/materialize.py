"""Materialization to Redis, end to end: 1,000,000 source rows of 100,000 entities.

    python benchmarks/materialize.py [--entities 100000] [--per-entity 10]

Runs, in one go and against the same private redis-server:
  ours   `store.materialize(start, end)`: read the source, write offline Parquet, dedup to the
         latest row per entity, encode, write to Redis (newest-wins), record the watermark;
  naive  the same latest rows, written with a pipelined HSET of every feature as a hash field
         (what a hand-rolled job does; no offline copy, no newest-wins check).
Each runs in a fresh child process, so its peak RSS is its own; both import their libraries before
the clock starts (printed separately). Prints entity rows/s and peak RSS.
Targets (issue 3): ours >= 50,000 entity rows/s and < 500 MB peak RSS. Also prints the time the
run spent on feature statistics (issue 14: <= 25% of materialization time); --stats-baseline
also runs `ours-nostats`, the same run with the statistics step left out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH = ROOT / ".bench" / "materialize"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

DEFS = """
from datetime import timedelta
from featurestore import *
entity = Entity(name="user", join_keys=["user_id"])
source = ParquetSource(name="events", path="data/events.parquet", created_timestamp_field="created")
stats = FeatureView(name="user_stats", entities=[entity], ttl=timedelta(days=30), source=source, schema=[
    Field("f_float_0", Float64), Field("f_float_1", Float64), Field("f_float_2", Float64), Field("f_float_3", Float32),
    Field("f_int_0", Int64), Field("f_int_1", Int64), Field("f_int_2", Int32),
    Field("f_str_0", String), Field("f_str_1", String), Field("f_bool_0", Bool)])
"""


def generate(entities: int, per_entity: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    n = entities * per_entity
    ids = np.tile(np.arange(entities, dtype=np.int64), per_entity)
    hours = np.repeat(np.arange(per_entity), entities)
    ts = np.datetime64(T0.replace(tzinfo=None), "us") + hours.astype("timedelta64[h]")
    table = pa.table(
        {
            "user_id": ids,
            "event_timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "created": pa.array(ts + np.timedelta64(1, "m"), pa.timestamp("us", tz="UTC")),
            **{f"f_float_{i}": rng.random(n) for i in range(3)},
            "f_float_3": rng.random(n).astype(np.float32),
            **{f"f_int_{i}": rng.integers(0, 1_000_000, n) for i in range(2)},
            "f_int_2": rng.integers(0, 1000, n).astype(np.int32),
            "f_str_0": pa.array(rng.choice(["alpha", "beta", "gamma", "delta"], n)),
            "f_str_1": pa.array(rng.choice([f"city_{i}" for i in range(50)], n)),
            "f_bool_0": rng.random(n) < 0.5,
        }
    )
    pq.write_table(table, BENCH / "repo" / "data" / "events.parquet", row_group_size=200_000)


CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
mode, repo, url, end = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
import os
os.environ["FS_ONLINE_URL"] = url
os.environ["FS_ONLINE_KEY_PREFIX"] = "bench-" + mode
from featurestore import FeatureStore
store = FeatureStore(repo)
# Throughput, not interpreter start-up: both contenders import their libraries and read the
# definitions before the clock starts (a cold `fs materialize` process adds ~0.2 s of imports).
warm = time.perf_counter()
import duckdb, redis, pyarrow.compute, featurestore.materialize, featurestore.online.redis  # noqa
store.catalog
warm = time.perf_counter() - warm
# CPU seconds (all threads) of the statistics step, beside its wall time: steadier on a busy machine.
import featurestore.monitoring.stats as fs_stats
stats_cpu = 0.0
profile = fs_stats.run_profile
def timed_profile(*args):
    global stats_cpu
    cpu = time.process_time()
    try:
        return profile(*args)
    finally:
        stats_cpu += time.process_time() - cpu
fs_stats.run_profile = timed_profile
if mode == "ours-nostats":  # the same run without its statistics step: what the step costs
    fs_stats.run_profile = lambda *args: (None, 0.0)
began, cpu = time.perf_counter(), time.process_time()
if mode.startswith("ours"):
    result = store.materialize("2026-01-01", end)
    entity_rows = result.online_rows
    stats_seconds = sum(r.stats_seconds for r in result.runs)
else:
    stats_seconds = 0.0
    import redis
    from featurestore.offline.features import source_rows_sql
    from featurestore.offline.sources import SourceReader, arrow_batches, duckdb_connection
    view = store.catalog.view("user_stats")
    con = duckdb_connection()
    sql = source_rows_sql(SourceReader(con, store.repo_path, store.catalog.sources), view)
    latest = f"SELECT * FROM ({{sql}}) QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY __event_ts DESC, __created_ts DESC NULLS LAST) = 1"
    client = redis.Redis.from_url(url)
    entity_rows = 0
    for batch in arrow_batches(con, latest, 10_000):
        pipe = client.pipeline(transaction=False)
        for row in batch.to_pylist():
            key = f"naive:user_stats:{{row['user_id']}}"
            mapping = {{k: str(v) for k, v in row.items() if k not in ("user_id", "__created_ts")}}
            pipe.hset(key, mapping=mapping)
            entity_rows += 1
        pipe.execute()
seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
print(json.dumps({{"seconds": seconds, "entity_rows": entity_rows, "warmup": warm, "stats_seconds": stats_seconds,
                  "cpu": cpu, "stats_cpu": stats_cpu,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run_child(mode: str, url: str, end: str) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(CHILD.format(root=str(ROOT))),
            mode,
            str(BENCH / "repo"),
            url,
            end,
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--per-entity", type=int, default=10)
    parser.add_argument(
        "--stats-baseline",
        action="store_true",
        help="also run ours without the feature statistics step (to measure what it costs)",
    )
    args = parser.parse_args()

    from tests.redis_server import start_redis

    shutil.rmtree(BENCH, ignore_errors=True)
    (BENCH / "repo" / "data").mkdir(parents=True)
    (BENCH / "repo" / "featurestore.toml").write_text('project = "bench"\n')
    (BENCH / "repo" / "stats.py").write_text(DEFS)
    generate(args.entities, args.per_entity)
    server = start_redis()
    if server is None:
        raise SystemExit("needs redis-server (apt-get install redis-server)")
    try:
        import os

        os.environ["FS_ONLINE_URL"] = server.url
        from featurestore import FeatureStore

        FeatureStore(BENCH / "repo").apply()
        end = (T0 + timedelta(hours=args.per_entity)).isoformat()
        source_rows = args.entities * args.per_entity
        print(f"materialize {source_rows:,} source rows of {args.entities:,} entities to Redis")
        modes = ("ours", "ours-nostats", "naive") if args.stats_baseline else ("ours", "naive")
        results = {mode: run_child(mode, server.url, end) for mode in modes}
        for mode, r in results.items():
            rate = r["entity_rows"] / r["seconds"]
            print(
                f"  {mode:12s} {r['seconds']:6.2f} s  {rate:10,.0f} entity rows/s  "
                f"{source_rows / r['seconds']:10,.0f} source rows/s  peak RSS {r['peak_rss_mb']:6.0f} MB  "
                f"(+{r['warmup']:.2f} s imports before the clock)"
            )
        ours = results["ours"]
        share = ours["stats_seconds"] / ours["seconds"]
        print(
            f"  ours: feature statistics {ours['stats_seconds']:.2f} s of {ours['seconds']:.2f} s "
            f"({100 * share:.0f}% of the run; {100 * share / (1 - share):.0f}% over the run without them); "
            f"CPU {ours['stats_cpu']:.2f} s of {ours['cpu']:.2f} s ({100 * ours['stats_cpu'] / ours['cpu']:.0f}%)"
        )
        if "ours-nostats" in results:
            without = results["ours-nostats"]["seconds"]
            print(
                f"  ours against ours-nostats: {ours['seconds'] - without:+.2f} s "
                f"({100 * (ours['seconds'] - without) / without:+.0f}% of the run without statistics)"
            )
        rate = ours["entity_rows"] / ours["seconds"]
        print(
            f"targets: >= 50,000 entity rows/s: {'met' if rate >= 50_000 else 'MISSED'}; "
            f"< 500 MB: {'met' if ours['peak_rss_mb'] < 500 else 'MISSED'}"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
