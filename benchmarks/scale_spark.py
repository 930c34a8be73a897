"""The Spark engine against the DuckDB engine: one point-in-time join, both through get_historical_features.

    .venv/bin/python benchmarks/scale_spark.py              # 10M feature rows x 1M entity rows
    .venv/bin/python benchmarks/scale_spark.py --scale 0.5  # 500k x 50k, a quick run

Data: the generator of `benchmarks/pit_join.py` (one view, ttl 1 day, 10 features of mixed types,
ties on event and created time), `scale` x (1M feature rows, 100k entity rows), generated once under
.bench/scale_spark/. Each engine runs in its own process and writes the training set with
`to_parquet` (on Spark the rows stream from the executors' files; nothing is collected):

- duckdb: `[offline] engine = "duckdb"`;
- spark: `[offline] engine = "spark"`, `spark_master = "local[2]"`; session start-up is timed apart.

Reported: both join times and their ratio, each process's peak RSS, and on Spark the driver's Python
RSS growth during the join and the JVM's peak RSS (local mode: the JVM also runs the executors). The
two files must be equal (exit 1 otherwise). Spark is expected to be slower on one machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.pit_join import BASE_US, DAY_US, DEFINITIONS, ROWS_PER_ENTITY, _feature_chunk  # noqa: E402

DATA_VERSION = 1
FEATURE_ROWS_PER_SCALE = 1_000_000
ENTITY_ROWS_PER_SCALE = 100_000


def generate(folder: Path, scale: float) -> None:
    """Feature rows and entity rows for `scale`, and the repo, unless already there."""
    if (folder / "READY").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    repo = folder / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "featurestore.toml").write_text('project = "bench"\n')
    (repo / "defs.py").write_text(textwrap.dedent(DEFINITIONS))
    n_entities = max(1, int(FEATURE_ROWS_PER_SCALE * scale) // ROWS_PER_ENTITY)
    chunk = 100_000
    writer = None
    for i, start in enumerate(range(0, n_entities, chunk)):
        table = _feature_chunk(np.random.default_rng(1000 + i), start, min(chunk, n_entities - start))
        writer = writer or pq.ParquetWriter(repo / "data" / "features.parquet", table.schema)
        writer.write_table(table, row_group_size=122_880)
    assert writer is not None
    writer.close()
    rng = np.random.default_rng(7)
    m = max(1, int(ENTITY_ROWS_PER_SCALE * scale))
    entities = pa.table(
        {
            "entity_id": rng.integers(0, int(n_entities * 1.05) + 1, m),
            "event_timestamp": pa.array((BASE_US + rng.integers(0, 11 * DAY_US, m)).astype("datetime64[us]")),
            "label": rng.random(m) < 0.3,
        }
    )
    pq.write_table(entities, folder / "entities.parquet")
    (folder / "READY").write_text("ok")


# The child process: one engine, one join, figures as JSON on stdout's last line.
CHILD = """
import json, os, resource, sys, threading, time
import psutil, pyarrow.parquet as pq
from featurestore import FeatureStore
from featurestore.config import load_config, OfflineConfig
from dataclasses import replace

folder, engine, out = sys.argv[1], sys.argv[2], sys.argv[3]
me = psutil.Process()
config = replace(load_config(folder + "/repo"), offline=OfflineConfig(engine=engine, spark_master="local[2]"))
store = FeatureStore(config=config)
store.apply()
entities = pq.read_table(folder + "/entities.parquet")
figures = {}
if engine == "spark":
    t0 = time.perf_counter()
    from featurestore.offline.spark_session import spark_session
    spark_session("local[2]").sparkContext.setLogLevel("ERROR")
    figures["session_seconds"] = round(time.perf_counter() - t0, 2)
peak = {"python": 0, "jvm": 0}
done = threading.Event()

def sample():
    while not done.wait(0.05):
        peak["python"] = max(peak["python"], me.memory_info().rss)
        jvm = sum(c.memory_info().rss for c in me.children(recursive=True) if "java" in c.name())
        peak["jvm"] = max(peak["jvm"], jvm)

before = me.memory_info().rss
threading.Thread(target=sample, daemon=True).start()
t0 = time.perf_counter()
store.get_historical_features(entities, ["stats:" + f for f in %(features)r]).to_parquet(out)
figures["seconds"] = round(time.perf_counter() - t0, 2)
done.set()
figures["python_rss_before_mb"] = round(before / 2**20)
figures["python_rss_growth_mb"] = round((peak["python"] - before) / 2**20)
figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
if engine == "spark":
    figures["jvm_peak_rss_mb"] = round(peak["jvm"] / 2**20)
print(json.dumps(figures))
"""


def _run_engine(folder: Path, engine: str, out: Path) -> dict[str, Any]:
    from benchmarks.pit_join import FEATURES

    code = CHILD % {"features": list(FEATURES)}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(folder), engine, str(out)], capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the {engine} run failed:\n{proc.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures


def run_spark_benchmark(scale: float = 10.0) -> dict[str, Any]:
    """Generate the data for `scale` (if needed), run the join on DuckDB then on Spark `local[2]`;
    returns the figures (`equal` says whether both training sets are the same)."""
    folder = ROOT / ".bench" / "scale_spark" / f"v{DATA_VERSION}-scale-{scale:g}"
    generate(folder, scale)
    feature_rows = pq.ParquetFile(folder / "repo" / "data" / "features.parquet").metadata.num_rows
    entity_rows = pq.ParquetFile(folder / "entities.parquet").metadata.num_rows
    results: dict[str, Any] = {"feature_rows": feature_rows, "entity_rows": entity_rows}
    outs = {engine: folder / f"result-{engine}.parquet" for engine in ("duckdb", "spark")}
    for engine, out in outs.items():
        results[engine] = _run_engine(folder, engine, out)
    results["spark_over_duckdb"] = round(results["spark"]["seconds"] / results["duckdb"]["seconds"], 2)
    results["equal"] = pq.read_table(outs["duckdb"]).equals(pq.read_table(outs["spark"]))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=float, default=10.0, help="scale x (1M feature rows, 100k entity rows)"
    )
    args = parser.parse_args()
    began = time.perf_counter()
    results = run_spark_benchmark(args.scale)
    results["total_seconds"] = round(time.perf_counter() - began, 1)
    print(json.dumps(results, indent=2))
    if not results["equal"]:
        print("FAIL: the Spark and DuckDB training sets differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
