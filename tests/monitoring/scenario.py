"""A model served from a real repo, for the end-to-end monitoring tests.

    sc = served_scenario(tmp_path)          # repo, training set, model@production, online store
    sc.serve(1000)                          # 1,000 predictions (batches of 100) into the prediction log
    sc.shift("conv_rate", 0.1)              # newer source rows with conv_rate + 0.1, materialized online
    sc.serve(1000, seed=1)
    sc.store.monitor.drift(sc.ref)

Drivers 1..n_drivers each have `rows_per_driver` hourly rows over the last two days, with
conv_rate ~ N(0.5, 0.1), acc_rate ~ U(0, 1) and trips ~ Poisson(20), independent per row, so the
served values (the newest row of each driver) and the training set (rows at earlier times) come
from the same distribution. The model is a LinearRegression of
label = 3 conv_rate + acc_rate - trips / 50 + noise, registered with its training set and the
validation metrics `r2` and `neg_mean_absolute_error`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore import FeatureStore
from featurestore.models.prediction_log import PredictionLog
from featurestore.models.serving import ModelServer
from tests.repo_builder import make_repo

MODEL = "trip_eta"
FEATURES = ["conv_rate", "acc_rate", "trips"]

DEFINITIONS = """
from datetime import timedelta
from featurestore import Entity, FeatureService, FeatureView, Field, Float64, Int64, ParquetSource

driver = Entity(name="driver", join_keys=["driver_id"])
stats_source = ParquetSource(name="stats_source", path="data/stats/*.parquet", timestamp_field="event_timestamp")
driver_stats = FeatureView(name="driver_stats", entities=[driver], ttl=timedelta(days=3), source=stats_source,
                           schema=[Field("driver_id", Int64), Field("conv_rate", Float64), Field("acc_rate", Float64),
                                   Field("trips", Int64)])
eta_features = FeatureService(name="eta_features", features=[driver_stats[["conv_rate", "acc_rate", "trips"]]])
"""


def label_of(conv: Any, acc: Any, trips: Any, rng: np.random.Generator | None = None) -> Any:
    """The true label of a feature vector (plus noise when `rng` is given)."""
    y = 3 * np.asarray(conv, float) + np.asarray(acc, float) - np.asarray(trips, float) / 50
    return y + (rng.normal(0, 0.05, len(y)) if rng is not None else 0)


def source_rows(
    drivers: int, rows_per_driver: int, end: datetime, seed: int, shift: dict[str, float] | None = None
) -> pa.Table:
    """`rows_per_driver` hourly rows per driver ending at `end` (features shifted by `shift`)."""
    rng = np.random.default_rng(seed)
    n = drivers * rows_per_driver
    ids = np.repeat(np.arange(1, drivers + 1), rows_per_driver)
    hours = np.tile(np.arange(rows_per_driver)[::-1], drivers)
    ts = [end - timedelta(hours=int(h)) for h in hours]
    shift = shift or {}
    return pa.table(
        {
            "driver_id": pa.array(ids, pa.int64()),
            "event_timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "conv_rate": pa.array(rng.normal(0.5, 0.1, n) + shift.get("conv_rate", 0.0), pa.float64()),
            "acc_rate": pa.array(rng.random(n) + shift.get("acc_rate", 0.0), pa.float64()),
            "trips": pa.array(rng.poisson(20, n) + int(shift.get("trips", 0)), pa.int64()),
        }
    )


@dataclass
class Scenario:
    root: Path
    store: FeatureStore
    server: ModelServer
    version: int
    drivers: int
    model: str = MODEL
    requests: list[tuple[str, int]] = field(default_factory=list)  # (request_id, rows) in serving order

    @property
    def ref(self) -> str:
        return f"{self.model}@production"

    def serve(self, n: int, seed: int = 0, batch: int = 100) -> list[tuple[str, int]]:
        """Serve `n` predictions for random drivers, in requests of `batch` rows; flush the log."""
        rng = np.random.default_rng(1000 + seed)
        done = []
        for start in range(0, n, batch):
            size = min(batch, n - start)
            rows = [{"driver_id": int(d)} for d in rng.integers(1, self.drivers + 1, size)]
            out = self.server.predict(self.ref, rows, request_id=uuid.uuid4().hex)
            done.append((out["request_id"], size))
        assert self.server.log is not None
        self.server.log.flush()
        self.requests += done
        return done

    def shift(self, feature: str, delta: float) -> datetime:
        """Add, for every driver, a newer source row with `feature` moved by `delta`, and materialize
        it (so it is what serving reads from now on); returns the new rows' event time."""
        now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=1)
        table = source_rows(self.drivers, 1, now, seed=int(now.timestamp()) % 10_000, shift={feature: delta})
        pq.write_table(table, self.root / "data" / "stats" / f"shift-{uuid.uuid4().hex[:8]}.parquet")
        self.store.materialize(now - timedelta(minutes=1), now)
        return now

    def log(self) -> pa.Table:
        """Every prediction logged so far."""
        assert self.server.log is not None
        return self.server.log.read(self.model)

    def close(self) -> None:
        self.server.close()
        self.store.close()


def served_scenario(
    root: Path,
    drivers: int = 2000,
    rows_per_driver: int = 4,
    train_rows: int = 3000,
    config: str = "",
    online: str = "sqlite",
    redis_url: str | None = None,
) -> Scenario:
    """Build the repo in `root`, save a training set, register the model (alias production) and
    open a ModelServer whose prediction log flushes only when asked."""
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import mean_absolute_error, r2_score

    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    if online == "redis":
        cfg = (
            f'[online]\ntype = "redis"\nurl = "{redis_url}"\nkey_prefix = "fstest-{uuid.uuid4().hex[:10]}"\n'
        )
    else:
        cfg = '[online]\ntype = "sqlite"\npath = "data/online.db"\n'
    make_repo(
        root,
        {"features.py": DEFINITIONS},
        {
            "data/stats/part-0.parquet": source_rows(
                drivers, rows_per_driver, now - timedelta(hours=1), seed=7
            )
        },
        config=cfg + config,
    )
    store = FeatureStore(root)
    store.apply()
    store.materialize(now - timedelta(days=5), now)

    rng = np.random.default_rng(11)
    times = [now - timedelta(minutes=int(m)) for m in rng.integers(0, 60 * rows_per_driver, train_rows)]
    entity_df = pa.table(
        {
            "driver_id": pa.array(rng.integers(1, drivers + 1, train_rows), pa.int64()),
            "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        }
    )
    job = store.get_historical_features(entity_df, features="eta_features")
    frame = job.to_pandas().dropna(subset=FEATURES)
    job.save(f"{MODEL}_train")
    y = label_of(frame["conv_rate"], frame["acc_rate"], frame["trips"], rng)
    cut = int(len(frame) * 0.8)
    X = frame[FEATURES].astype("float64")
    model = LinearRegression().fit(X[:cut], y[:cut])
    pred = model.predict(X[cut:])
    mv = store.models.register(
        MODEL,
        model,
        feature_service="eta_features",
        training_set=f"{MODEL}_train",
        metrics={
            "r2": float(r2_score(y[cut:], pred)),
            "neg_mean_absolute_error": -float(mean_absolute_error(y[cut:], pred)),
        },
        missing_policy="null",
    )
    store.models.set_alias(MODEL, "production", mv.version)
    log = PredictionLog(store.monitor.log_path, flush_interval=3600)  # a folder, or s3://...
    server = ModelServer(store, prediction_log=log, watch=False)
    return Scenario(root=root, store=store, server=server, version=mv.version, drivers=drivers)
