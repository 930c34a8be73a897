"""A small repo with a training pipeline, for the pipeline tests.

    sc = pipeline_repo(tmp_path)           # old regime applied and materialized, nothing trained
    sc.store.pipelines.run("churn", end=sc.old_end)     # the champion: trained on the old regime
    sc.shift()                             # new regime rows (features and labels), materialized
    sc.serve(300)                          # predictions of churn@production into the log

Drivers each have a row every 12 hours with features x ~ U(lo, lo + 1), z ~ N(0, 1) (noise) and
w (x plus a little noise, outside the pipeline's service `churn_features`: see `x_and_w`),
and a label row at the same time: y = 1 when x is above the regime's middle. The old regime has
x in [0, 1] (middle 0.5) ten to seven days ago; the new one x in [1, 2] (middle 1.5) over the last
two days: a model of the old regime says 1 for every new row (about half right), and the drift
of x shows in what it serves. The pipeline trains a depth-2 decision tree on the newest two days
of the spine and promotes on accuracy.
"""

from __future__ import annotations

import textwrap
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore import FeatureStore
from tests.repo_builder import make_repo

MODEL = "churn"

DEFINITIONS = """
from datetime import timedelta
from featurestore import Entity, FeatureService, FeatureView, Field, Float64, Int64, ParquetSource

driver = Entity(name="driver", join_keys=["driver_id"])
stats_source = ParquetSource(name="stats_source", path="data/stats/*.parquet", timestamp_field="event_timestamp")
labels = ParquetSource(name="labels", path="data/labels/*.parquet", timestamp_field="event_timestamp")
driver_stats = FeatureView(name="driver_stats", entities=[driver], ttl=timedelta(days=30), source=stats_source,
                           schema=[Field("driver_id", Int64), Field("x", Float64), Field("z", Float64),
                                   Field("w", Float64)])
churn_features = FeatureService(name="churn_features", features=[driver_stats[["x", "z"]]])
x_and_w = FeatureService(name="x_and_w", features=[driver_stats[["x", "w"]]])
"""

PIPELINE = """
from datetime import timedelta
from featurestore import training_pipeline

FEATURES = ["x", "z"]


@training_pipeline(model="churn", features="churn_features", spine="labels", label="y", metric="accuracy",
                   lookback=timedelta(days=2){options})
def train(train_df, valid_df):
{body}
"""

TREE = """\
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(max_depth=2, random_state=0).fit(train_df[FEATURES], train_df["y"])
"""

CONSTANT = """\
    from sklearn.dummy import DummyClassifier

    return DummyClassifier(strategy="most_frequent").fit(train_df[FEATURES], train_df["y"])
"""

CONFIG = """
[online]
type = "sqlite"
path = "data/online.db"

[monitoring]
min_reference_rows = 200
min_current_rows = 50
"""


def pipeline_source(body: str = TREE, options: str = "") -> str:
    return PIPELINE.format(
        body=textwrap.indent(textwrap.dedent(body), "    ").rstrip() + "\n", options=options
    )


def regime_rows(drivers: int, times: list[datetime], low: float, seed: int) -> tuple[pa.Table, pa.Table]:
    """(feature rows, label rows) of every driver at every time of `times`, x ~ U(low, low + 1)."""
    rng = np.random.default_rng(seed)
    n = drivers * len(times)
    ids = np.tile(np.arange(1, drivers + 1), len(times))
    ts = pa.array(np.repeat(times, drivers), pa.timestamp("us", tz="UTC"))
    x = rng.random(n) + low
    features = pa.table(
        {
            "driver_id": pa.array(ids, pa.int64()),
            "event_timestamp": ts,
            "x": pa.array(x, pa.float64()),
            "z": pa.array(rng.normal(0, 1, n), pa.float64()),
            "w": pa.array(x + rng.normal(0, 0.01, n), pa.float64()),  # x again, slightly noisy
        }
    )
    labels = pa.table(
        {
            "driver_id": pa.array(ids, pa.int64()),
            "event_timestamp": ts,
            "y": pa.array((x > low + 0.5).astype(np.int64), pa.int64()),
        }
    )
    return features, labels


@dataclass
class PipelineScenario:
    root: Path
    store: FeatureStore
    drivers: int
    now: datetime
    model: str = MODEL

    @property
    def old_end(self) -> datetime:
        return self.now - timedelta(days=7)

    def write(self, name: str, features: pa.Table, labels: pa.Table) -> None:
        pq.write_table(features, self.root / "data" / "stats" / f"{name}.parquet")
        pq.write_table(labels, self.root / "data" / "labels" / f"{name}.parquet")

    def shift(self) -> None:
        """The new regime: rows every 12 hours over the last two days, materialized online."""
        times = [self.now - timedelta(hours=12 * k) for k in range(4, -1, -1)]
        self.write("new", *regime_rows(self.drivers, times, 1.0, seed=2))
        self.store.materialize(self.now - timedelta(days=3), self.now)

    def set_pipeline(self, body: str = TREE, options: str = "") -> None:
        """Rewrite the pipeline's file and apply it."""
        (self.root / "pipelines.py").write_text(pipeline_source(body, options))
        self.store.apply()

    def serve(self, n: int, seed: int = 0) -> None:
        """`n` predictions of churn@production for random drivers, logged and flushed."""
        from featurestore.models.prediction_log import PredictionLog
        from featurestore.models.serving import ModelServer

        log = PredictionLog(self.store.config.monitor.log_path, flush_interval=3600)
        server = ModelServer(self.store, prediction_log=log, watch=False)
        try:
            rng = np.random.default_rng(100 + seed)
            for start in range(0, n, 100):
                rows = [{"driver_id": int(d)} for d in rng.integers(1, self.drivers + 1, min(100, n - start))]
                server.predict(f"{self.model}@production", rows, request_id=uuid.uuid4().hex)
            assert server.log is not None
            server.log.flush()
        finally:
            server.close()


def pipeline_repo(root: Path, drivers: int = 150, body: str = TREE, options: str = "") -> PipelineScenario:
    """The repo with the old regime's rows (ten to seven days ago), applied and materialized."""
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    make_repo(
        root,
        {"features.py": DEFINITIONS, "pipelines.py": pipeline_source(body, options)},
        config=CONFIG,
    )
    (root / "data" / "stats").mkdir(parents=True)
    (root / "data" / "labels").mkdir(parents=True)
    sc = PipelineScenario(root=root, store=FeatureStore(root), drivers=drivers, now=now)
    old = [now - timedelta(days=10) + timedelta(hours=12 * k) for k in range(7)]
    sc.write("old", *regime_rows(drivers, old, 0.0, seed=1))
    sc.store.apply()
    sc.store.materialize(now - timedelta(days=11), now)
    return sc
