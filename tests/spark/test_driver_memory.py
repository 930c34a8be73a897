"""Nothing is collected on the driver: a 10x larger point-in-time join (feature rows and entity rows)
grows the driver's Python memory by far less than 10x.

The joins run in a child process with a Spark session of its own (`local[2]`), the data generated
beforehand in another, so its RSS and Arrow's high-water mark (`max_memory()` of the default pool)
are only this work's; the training set is written with `to_parquet`, which streams the executors'
output. What the driver must hold anyway is entity_df (the caller's table) and one batch at a time.
RSS is mostly fixed buffers at these sizes (DuckDB's staging, pyspark); the Arrow peak is what the
driver holds of the rows (a `to_arrow()` planted in `to_parquet` makes it 5x the streaming one).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

GENERATE = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from benchmarks.scale_spark import generate
for scale in (0.2, 2.0):
    generate(Path(sys.argv[2]) / f"scale-{scale}", scale)
"""

CHILD = """
import json, sys, threading
from dataclasses import replace
import psutil, pyarrow as pa, pyarrow.parquet as pq
sys.path.insert(0, sys.argv[1])
from benchmarks.pit_join import FEATURES
from featurestore import FeatureStore
from featurestore.config import OfflineConfig, load_config
from featurestore.offline.spark_session import spark_session

root = sys.argv[2]
spark_session("local[2]").sparkContext.setLogLevel("ERROR")
me = psutil.Process()
growth, arrow = {}, {}
pool = pa.default_memory_pool()
for scale in (0.2, 2.0):
    folder = f"{root}/scale-{scale}"
    config = replace(load_config(folder + "/repo"), offline=OfflineConfig(engine="spark"))
    store = FeatureStore(config=config)
    store.apply()
    entities = pq.read_table(folder + "/entities.parquet")
    peak, done = [0], threading.Event()
    def sample():
        while not done.wait(0.02):
            peak[0] = max(peak[0], me.memory_info().rss)
    before = me.memory_info().rss
    arrow_before = pool.bytes_allocated()
    thread = threading.Thread(target=sample)
    thread.start()
    store.get_historical_features(entities, ["stats:" + f for f in FEATURES]).to_parquet(folder + "/out.parquet")
    done.set()
    thread.join()
    growth[scale] = (peak[0] - before) / 2**20
    arrow[scale] = (pool.max_memory() - arrow_before) / 2**20  # Arrow's high-water mark (0 if not passed)
    assert pq.ParquetFile(folder + "/out.parquet").metadata.num_rows == entities.num_rows
print(json.dumps({"rss": growth, "arrow": arrow}))
"""


@pytest.mark.slow
def test_a_10x_larger_join_keeps_the_driver_memory_flat(spark, tmp_path):
    # The data first, in a process of its own: Arrow's high-water mark must be the joins' alone.
    subprocess.run([sys.executable, "-c", GENERATE, str(ROOT), str(tmp_path)], check=True, timeout=120)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT), str(tmp_path)], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    small, large = figures["rss"]["0.2"], figures["rss"]["2.0"]
    arrow_small, arrow_large = figures["arrow"]["0.2"], figures["arrow"]["2.0"]
    print(
        f"driver Python RSS growth: {small:.0f} MB at 1x, {large:.0f} MB at 10x; "
        f"Arrow memory peak: {arrow_small:.1f} MB at 1x, {arrow_large:.1f} MB at 10x"
    )
    # Proportional would be ~10x; entity_df itself (the caller's) is 10x too, but small beside the join.
    assert large <= 2 * small + 40, f"driver RSS grew {small:.0f} MB at 1x but {large:.0f} MB at 10x"
    # Arrow data the driver holds at once (the training set written a batch at a time, never whole):
    # the whole result would be ~20 MB at 10x.
    assert arrow_large <= 2 * arrow_small + 8, (
        f"Arrow peak {arrow_small:.1f} MB at 1x, {arrow_large:.1f} MB at 10x"
    )
