"""The demo `make demo` runs after generating data, `fs apply` and `fs materialize-incremental`:
a training set from the trips, online lookups, then a model trained, registered, promoted and served,
and watched: predictions served, one feature shifted, more served, and the drift table printed.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from featurestore import FeatureStore

HERE = Path(__file__).resolve().parent


def main() -> None:
    pd.set_option("display.width", 140)
    pd.set_option("display.max_columns", 12)
    store = FeatureStore(HERE)

    print("\n== 1. A point-in-time-correct training set (notebook path) ==")
    # The entity rows (keys, time, the trip's distance, the label) come from the `trips` spine; window
    # aggregates count only events before each row's time; trip_shape runs per row.
    # The last two days of trips: before that, the example data's windows are not yet full and its
    # customers have no profile, which serving never sees (monitoring would flag it, step 4).
    recent = store.get_historical_features(
        spine="trips", features=["driver_hourly_stats:conv_rate"]
    ).entity_df
    since = pd.Timestamp(recent.column("event_timestamp").to_pandas().max()) - pd.Timedelta(days=2)
    job = store.get_historical_features(spine="trips", features="driver_activity", start=since)
    training = job.to_pandas()
    trips = training[list(job.entity_df.column_names)]
    print(training.head(8).to_string(index=False))
    print(f"{len(training):,} rows; rows without driver features: {training['conv_rate'].isna().sum()}")

    print("\n== 2. Online lookups (serving path) ==")
    response = store.get_online_features(
        features="driver_activity",
        entity_rows=[  # distance_km: a request value, for the on-demand feature view trip_shape
            {"driver_id": 1001, "customer_id": 5001, "distance_km": 3.5},
            {"driver_id": 1002, "customer_id": 5002, "distance_km": 22.0},
            {"driver_id": 9999, "customer_id": 5003, "distance_km": 8.0},
        ],
    )
    print(response.to_pandas().to_string(index=False))
    activity = store.get_online_features(
        features=["driver_trip_activity:trips_1d", "driver_trip_activity:zone_last"],
        entity_rows=[{"driver_id": 1001}],
    )
    print(f"driver 1001, windows at read time: {activity.to_dict()}")

    print("\n== 3. Train, register, promote and serve a model ==")
    serve_a_model(store, job, trips, training)

    print("\n== 4. Watch it: drift of what the model serves from what it was trained on ==")
    watch_the_model(store, trips)


def serve_a_model(store: FeatureStore, job, trips: pd.DataFrame, training: pd.DataFrame) -> None:
    """Train on the training set, register the model with its lineage, alias it and predict over HTTP."""
    warnings.filterwarnings("ignore", message=".*httpx.*")  # starlette's TestClient nags about httpx2
    from fastapi.testclient import TestClient
    from sklearn.ensemble import HistGradientBoostingClassifier

    from featurestore.server import create_app

    job.save("trip_completion_train", overwrite=True)  # fingerprinted: definitions, entity rows, result
    X = training.drop(columns=trips.columns).astype("float64")
    y = training["trip_completed"]
    order = training["event_timestamp"].argsort().to_numpy()  # a time split: the newest fifth validates
    fit, valid = order[: len(order) * 4 // 5], order[len(order) * 4 // 5 :]
    params = {"max_iter": 50, "max_depth": 3, "min_samples_leaf": 100}
    model = HistGradientBoostingClassifier(**params, random_state=0).fit(X.iloc[fit], y.iloc[fit])
    version = store.models.register(
        "trip_completion",
        model,
        feature_service="driver_activity",
        training_set="trip_completion_train",
        # "accuracy": a scikit-learn scorer name, so monitoring can compare the live accuracy with it
        metrics={"accuracy": round(float(model.score(X.iloc[valid], y.iloc[valid])), 4)},
        params=params,
        missing_policy="null",
        description="Will the trip be completed?",
    )
    store.models.set_alias("trip_completion", "production", version.version)
    print(
        f"registered trip_completion v{version.version} (sha256 {version.sha256[:12]}...), alias production"
    )
    with TestClient(create_app(store)) as client:
        answer = client.post(
            "/models/trip_completion@production/predict",
            json={
                "entities": [
                    {"driver_id": 1001, "customer_id": 5001, "distance_km": 3.5},
                    {"driver_id": 1002, "customer_id": 5002, "distance_km": 22.0},
                ],
                "probabilities": True,
            },
        )
        print(f"POST /models/trip_completion@production/predict -> {answer.status_code}")
        print(answer.json())


DRIVERS = np.arange(1001, 1501)  # generate_data.py's drivers
ROUNDS, PER_ROUND = 12, 60  # requests of 60 trips; the shift comes half-way


def watch_the_model(store: FeatureStore, trips: pd.DataFrame) -> None:
    """Serve trips of the spine in rounds, the hourly pipeline pushing fresh driver statistics before
    each; half-way, a pipeline bug starts sending conv_rate as a percentage. The prediction log
    holds what was served; `store.monitor.drift` compares it with the training set."""
    from fastapi.testclient import TestClient

    from featurestore.console import console
    from featurestore.server import create_app

    rng = np.random.default_rng(7)
    push_trips_since_the_newest(store, rng)
    sample = trips.sample(frac=1, random_state=0)
    requests = sample[["driver_id", "customer_id", "distance_km"]].to_dict("records")
    labels = sample["trip_completed"].tolist()
    started_at, shifted_at = datetime.now(timezone.utc), None
    feedback = []
    with TestClient(create_app(store)) as client:  # leaving it flushes the prediction log
        for i in range(ROUNDS):
            if i == ROUNDS // 2:
                shifted_at = datetime.now(timezone.utc)
            push_driver_stats(store, rng, conv_rate_scale=100 if shifted_at else 1)
            batch = slice(i * PER_ROUND, (i + 1) * PER_ROUND)
            answer = client.post(
                "/models/trip_completion@production/predict", json={"entities": requests[batch]}
            )
            answer.raise_for_status()
            # Later, the trips' outcomes arrive: fed back by request id and row, for the live metric
            rid = answer.json()["request_id"]
            feedback += [{"request_id": rid, "row": j, "label": v} for j, v in enumerate(labels[batch])]
        client.post(
            "/models/trip_completion@production/feedback", json={"feedback": feedback}
        ).raise_for_status()
    push_driver_stats(store, rng, conv_rate_scale=1)  # the bug fixed: lookups after the demo look sane
    print(
        f"served {ROUNDS * PER_ROUND} trips; from {shifted_at:%H:%M:%S} UTC conv_rate came x100 (a units bug)"
    )
    # (windows from this run's start: an earlier run's predictions of the same version are logged too)
    before = store.monitor.drift("trip_completion@production", start=started_at, end=shifted_at)
    after = store.monitor.drift("trip_completion@production", start=shifted_at)
    print("\nBefore the shift (fs monitor drift trip_completion@production --start ... --end ...):")
    console().print(before.table())
    print("\nAfter the shift (fs monitor drift trip_completion@production --start ...):")
    console().print(after.table())
    live = store.monitor.performance("trip_completion@production", start=started_at)
    print(f"\nLive accuracy (labels fed back): {live.live:.3f} over {live.n} trips, {live.status} against")
    print(
        f"the validation accuracy {live.validation:.3f} recorded at registration (tolerance {live.tolerance})."
    )
    was, now = before.features["conv_rate"], after.features["conv_rate"]
    print(
        f"conv_rate: {was.status} (PSI {was.psi:.3f}) before, {now.status} (PSI {now.psi:.3f}) after. "
        "Only `drift` is a breach (fs monitor check exits 1 on it); `warn` is shown.\n"
        "The same from a shell: fs --repo definitions monitor drift trip_completion@production --since 1h"
    )


def push_driver_stats(store: FeatureStore, rng: np.random.Generator, conv_rate_scale: float) -> None:
    """Fresh statistics for every driver, as the hourly pipeline pushes them (drawn as
    generate_data.py draws them), to the online store and offline storage."""
    n = len(DRIVERS)
    store.push(
        "driver_stats_push",
        pd.DataFrame(
            {
                "driver_id": DRIVERS,
                "event_timestamp": [datetime.now(timezone.utc)] * n,
                "conv_rate": rng.random(n).round(4) * conv_rate_scale,
                "acc_rate": rng.random(n).round(4),
                "avg_daily_trips": rng.integers(0, 40, n),
                "vehicle_type": rng.choice(["sedan", "suv", "van"], n),
            }
        ),
        to="both",
    )


def push_trips_since_the_newest(store: FeatureStore, rng: np.random.Generator) -> None:
    """The trips finished since the newest one the online store holds (the example data ends at
    midnight; an earlier demo run may have pushed more), about 60 a day per driver, pushed as the
    app would: without them the 1-day windows served now would hold too few trips."""
    newest = {v.view: v.newest_event for v in store.monitor.freshness().views}
    end = newest["driver_trip_activity"]
    if end is None:
        return
    span = (datetime.now(timezone.utc) - end).total_seconds()
    n = int(len(DRIVERS) * 60 * span / 86_400)
    if n == 0:
        return
    ts = sorted(end + timedelta(seconds=float(s)) for s in rng.random(n) * span)
    store.push(
        "trip_events_push",
        pd.DataFrame(
            {
                "driver_id": rng.choice(DRIVERS, n),
                "event_timestamp": ts,
                "fare": rng.gamma(3.0, 6.0, n).round(2),
                "distance_km": rng.gamma(2.0, 4.0, n).round(2),
                "zone": rng.choice(np.arange(1, 9), n),
            }
        ),
        to="both",
    )


if __name__ == "__main__":
    main()
