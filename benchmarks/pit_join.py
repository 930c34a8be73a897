"""Point-in-time join benchmark: `get_historical_features` against hand-written DuckDB queries.

    python benchmarks/pit_join.py              # 1M feature rows (100k entities x 10), 100k entity rows
    python benchmarks/pit_join.py --scale 10   # 10M feature rows, 1M entity rows

Data (generated once, deterministically, under .bench/pit_join/v1-scale-N/): one feature view with ttl
1 day over a Parquet source, 10 features of mixed types (Int64, Int32, Float64, Float32, String,
Bool, one Int64 with nulls); about 1% of feature rows tie on event time with the entity's previous
row (half of those also on created time, so the value tie-break decides). Entity rows pick an entity
(5% unknown) and a time uniformly over the 11 days.

Each variant runs in its own process (so peak RSS is its own), best of --repeat runs:

- handwritten-range: a range join with `QUALIFY row_number()`, what an expert would write;
- handwritten-asof: `ASOF LEFT JOIN` over the feature rows deduplicated per (entity, event time);
- featurestore: `get_historical_features(entity_table, features).to_arrow()`, end to end (inputs
  checked, Arrow in, Arrow out, all entity columns), reading the source;
- featurestore-asof: the same, forcing the ASOF strategy (informational);
- featurestore-storage: the same after `materialize`, reading offline storage (informational).

All results must agree exactly (the script exits 1 otherwise). Targets: featurestore <= 1.3x the
fastest hand-written query; at --scale 10, peak RSS under 4 GB. Also times `import featurestore`
and `fs --help` in fresh processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA_VERSION = 1  # bump when the generator changes: data is reused while its folder exists
ENTITIES_PER_SCALE = 100_000
ROWS_PER_ENTITY = 10
DAY_US = 86_400_000_000
BASE_US = int(np.datetime64("2026-01-01T00:00:00", "us").astype(np.int64))
FEATURES = {  # name -> (featurestore type, Arrow type)
    "f_int1": ("Int64", pa.int64()),
    "f_int2": ("Int64", pa.int64()),
    "f_int32": ("Int32", pa.int32()),
    "f_float1": ("Float64", pa.float64()),
    "f_float2": ("Float64", pa.float64()),
    "f_float3": ("Float32", pa.float32()),
    "f_str1": ("String", pa.string()),
    "f_str2": ("String", pa.string()),
    "f_bool": ("Bool", pa.bool_()),
    "f_int3": ("Int64", pa.int64()),
}
VARIANTS = [
    "handwritten-range",
    "handwritten-asof",
    "featurestore",
    "featurestore-asof",
    "featurestore-storage",
]
HANDWRITTEN = [v for v in VARIANTS if v.startswith("handwritten")]

DEFINITIONS = f"""
from datetime import timedelta
from featurestore import *

entity = Entity(name="entity", join_keys=["entity_id"])
source = ParquetSource(name="feature_rows", path="data/features.parquet", created_timestamp_field="created")
stats = FeatureView(name="stats", entities=[entity], ttl=timedelta(days=1), online=False, source=source,
                    schema=[Field("entity_id", Int64), {", ".join(f'Field("{n}", {t})' for n, (t, _) in FEATURES.items())}])
"""


# -- data ------------------------------------------------------------------------------------------------


def generate(folder: Path, scale: int) -> None:
    """Feature rows (chunked, deterministic), entity rows and a feature repo, unless already there."""
    done = folder / "READY"
    if done.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    repo = folder / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "featurestore.toml").write_text('project = "bench"\n')
    (repo / "defs.py").write_text(textwrap.dedent(DEFINITIONS))
    n_entities = ENTITIES_PER_SCALE * scale
    chunk = 100_000
    schema = None
    writer = None
    for i, start in enumerate(range(0, n_entities, chunk)):
        table = _feature_chunk(np.random.default_rng(1000 + i), start, min(chunk, n_entities - start))
        if writer is None:
            schema = table.schema
            writer = pq.ParquetWriter(repo / "data" / "features.parquet", schema)
        writer.write_table(table, row_group_size=122_880)
    writer.close()
    rng = np.random.default_rng(7)
    m = ENTITIES_PER_SCALE * scale
    entity_ts = BASE_US + rng.integers(0, 11 * DAY_US, m)
    entities = pa.table(
        {
            "entity_id": rng.integers(0, int(n_entities * 1.05), m),
            "event_timestamp": pa.array(entity_ts.astype("datetime64[us]")),  # naive: read as UTC
            "label": rng.random(m) < 0.3,
        }
    )
    pq.write_table(entities, folder / "entities.parquet")
    done.write_text("ok")


def _feature_chunk(rng: np.random.Generator, first: int, n_entities: int) -> pa.Table:
    n = n_entities * ROWS_PER_ENTITY
    ids = np.repeat(np.arange(first, first + n_entities, dtype=np.int64), ROWS_PER_ENTITY)
    step = np.tile(np.arange(ROWS_PER_ENTITY), n_entities)
    ts = BASE_US + step * DAY_US + rng.integers(0, DAY_US // 2, n)
    tied = (rng.random(n) < 0.01) & (step > 0)  # same event time as the entity's previous row
    ts[tied] = ts[np.flatnonzero(tied) - 1]
    created = ts + rng.integers(0, 3_600_000_000, n)
    same_created = tied & (rng.random(n) < 0.5)
    created[same_created] = created[np.flatnonzero(same_created) - 1]
    utc = pa.timestamp("us", "UTC")
    return pa.table(
        {
            "entity_id": ids,
            "event_timestamp": pa.array(ts, pa.int64()).cast(utc),
            "created": pa.array(created, pa.int64()).cast(utc),
            "f_int1": rng.integers(0, 1000, n),
            "f_int2": rng.integers(-(10**9), 10**9, n),
            "f_int32": rng.integers(0, 100, n).astype(np.int32),
            "f_float1": rng.random(n),
            "f_float2": rng.normal(size=n),
            "f_float3": rng.random(n).astype(np.float32),
            "f_str1": pa.array(np.char.add("cat_", rng.integers(0, 50, n).astype(str))),
            "f_str2": pa.array(np.char.add("city_", rng.integers(0, 1000, n).astype(str))),
            "f_bool": rng.random(n) < 0.5,
            "f_int3": pa.array(rng.integers(0, 10, n), mask=rng.random(n) < 0.1),
        }
    )


# -- variants ----------------------------------------------------------------------------------------


def handwritten_sql(kind: str, features_file: Path) -> str:
    """The same semantics as get_historical_features, written by hand for this one view."""
    rows = f"read_parquet('{features_file}')"
    names = list(FEATURES)
    cols = ", ".join(f"f.{n}" for n in names)
    ties = ", ".join(f"f.{n} DESC NULLS LAST" for n in names)
    e = "(SELECT __row_id, entity_id, event_timestamp::TIMESTAMPTZ AS ts FROM entities)"
    ttl = "INTERVAL 1 DAY"
    if kind == "handwritten-range":
        return f"""
            SELECT e.__row_id, {cols}
            FROM {e} e LEFT JOIN {rows} f
              ON e.entity_id = f.entity_id AND f.event_timestamp <= e.ts AND f.event_timestamp >= e.ts - {ttl}
            QUALIFY row_number() OVER (PARTITION BY e.__row_id
                ORDER BY f.event_timestamp DESC, f.created DESC NULLS LAST, {ties}) = 1
            ORDER BY e.__row_id"""
    if kind == "handwritten-asof":
        return f"""
            WITH latest AS (
                SELECT * FROM {rows} f
                QUALIFY row_number() OVER (PARTITION BY f.entity_id, f.event_timestamp
                    ORDER BY f.created DESC NULLS LAST, {ties}) = 1)
            SELECT e.__row_id, {", ".join(f"CASE WHEN f.event_timestamp >= e.ts - {ttl} THEN f.{n} END AS {n}" for n in names)}
            FROM {e} e ASOF LEFT JOIN latest f ON e.entity_id = f.entity_id AND e.ts >= f.event_timestamp
            ORDER BY e.__row_id"""
    raise ValueError(kind)


def run_variant(variant: str, folder: Path, repeat: int, out: Path) -> dict:
    """Run one variant `repeat` times in this process; write its features to `out`; return timings."""
    entities = pq.read_table(folder / "entities.parquet")
    times = []
    if variant in HANDWRITTEN:
        from featurestore.offline.sources import arrow_table, duckdb_connection

        con = duckdb_connection()
        con.register("entities", entities.append_column("__row_id", pa.array(np.arange(entities.num_rows))))
        sql = handwritten_sql(variant, folder / "repo" / "data" / "features.parquet")
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = arrow_table(con, sql)
            times.append(time.perf_counter() - t0)
        result = result.drop_columns(["__row_id"])
    else:
        from featurestore import FeatureStore
        from featurestore.offline.retrieval import get_historical_features

        store = FeatureStore(folder / "repo")
        refs = [f"stats:{n}" for n in FEATURES]
        strategy = "asof" if variant == "featurestore-asof" else "auto"
        for _ in range(repeat):
            t0 = time.perf_counter()
            table = get_historical_features(store, entities, refs, strategy=strategy).to_arrow()
            times.append(time.perf_counter() - t0)
        result = table.select(list(FEATURES))
    pq.write_table(result, out)
    return {"variant": variant, "best": min(times), "times": times, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak RSS. /proc's VmHWM starts afresh at exec; ru_maxrss would include the parent's."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def in_subprocess(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"variant failed: {' '.join(args)}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def startup_times(repeat: int = 3) -> dict[str, float]:
    """Best wall time of `import featurestore` and `fs --help`, each in a fresh process."""
    out = {}
    fs = Path(sys.executable).parent / "fs"
    commands = {
        "import featurestore": [sys.executable, "-c", "import featurestore"],
        "fs --help": [str(fs), "--help"]
        if fs.exists()
        else [sys.executable, "-m", "featurestore.cli", "--help"],
    }
    for name, cmd in commands.items():
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True, cwd=ROOT)
            best = min(best, time.perf_counter() - t0)
        out[name] = best
    return out


# -- main ------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="1: 1M feature rows x 100k entity rows; 10: 10x")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant; the best counts")
    parser.add_argument(
        "--dir", type=Path, default=ROOT / ".bench" / "pit_join", help="where data is generated"
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS)
    )
    parser.add_argument("--run-variant", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = args.dir / f"v{DATA_VERSION}-scale-{args.scale}"

    if args.run_variant:  # child process: one variant
        print(json.dumps(run_variant(args.run_variant, folder, args.repeat, args.out)))
        return 0

    import duckdb

    t0 = time.perf_counter()
    generate(folder, args.scale)
    n_entities = ENTITIES_PER_SCALE * args.scale
    print(
        f"pit_join: {n_entities * ROWS_PER_ENTITY:,} feature rows ({n_entities:,} entities x {ROWS_PER_ENTITY}), "
        f"{n_entities:,} entity rows, ttl 1 day, 10 features; DuckDB {duckdb.__version__}, {os.cpu_count()} CPUs "
        f"(data ready in {time.perf_counter() - t0:.1f} s)"
    )
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    if not _apply(folder, materialize="featurestore-storage" in variants):
        variants.remove("featurestore-storage")

    results = {}
    for variant in variants:
        out = folder / f"result-{variant}.parquet"
        results[variant] = in_subprocess(
            [
                "--scale",
                str(args.scale),
                "--dir",
                str(args.dir),
                "--repeat",
                str(args.repeat),
                "--run-variant",
                variant,
                "--out",
                str(out),
            ]
        )
        results[variant]["result"] = pq.read_table(out)

    reference = next(iter(results.values()))["result"]
    agree = {v: r["result"].equals(reference) for v, r in results.items()}
    fastest = min((r["best"] for v, r in results.items() if v in HANDWRITTEN), default=None)
    print(f"\n{'variant':24} {'best of ' + str(args.repeat):>12} {'ratio':>8} {'peak RSS':>10}  agrees")
    for v, r in results.items():
        ratio = f"{r['best'] / fastest:.2f}x" if fastest else "-"
        print(
            f"{v:24} {r['best']:>10.3f} s {ratio:>8} {r['peak_rss_mb']:>7.0f} MB  {'yes' if agree[v] else 'NO'}"
        )

    startup = startup_times()
    print("\n" + "; ".join(f"{k}: {v:.2f} s" for k, v in startup.items()))

    ok = all(agree.values())
    if "featurestore" in results and fastest:
        ratio = results["featurestore"]["best"] / fastest
        verdict = "met" if ratio <= 1.3 else "MISSED"
        print(f"target featurestore <= 1.3x fastest hand-written: {ratio:.2f}x ({verdict})")
    if "featurestore" in results and args.scale >= 10:
        rss = results["featurestore"]["peak_rss_mb"]
        print(
            f"target peak RSS < 4 GB at scale {args.scale}: {rss / 1024:.2f} GB ({'met' if rss < 4096 else 'MISSED'})"
        )
    if not ok:
        print("RESULTS DISAGREE: " + ", ".join(v for v, a in agree.items() if not a))
    return 0 if ok else 1


def _apply(folder: Path, materialize: bool) -> bool:
    """Apply the repo; with `materialize`, fill offline storage. Returns whether storage has the rows."""
    from featurestore import FeatureStore, FeatureStoreError

    store = FeatureStore(folder / "repo")
    store.apply()
    if materialize and not store.offline_storage.has_data("stats"):
        t0 = time.perf_counter()
        try:
            store.materialize("2026-01-01T00:00:00", "2026-01-12T00:00:00")
        except FeatureStoreError as e:
            print(f"(materialize failed, skipping featurestore-storage: {str(e).splitlines()[0]})")
            return False
        print(f"(materialized offline storage in {time.perf_counter() - t0:.1f} s)")
    return store.offline_storage.has_data("stats")


if __name__ == "__main__":
    sys.exit(main())
