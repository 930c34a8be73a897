"""The demo `make demo` runs after generating data, `fs apply` and `fs materialize-incremental`:
a training set from the trips, online lookups, then a model trained, registered, promoted and served.
"""

from __future__ import annotations

import warnings
from pathlib import Path

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
    job = store.get_historical_features(spine="trips", features="driver_activity")
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


def serve_a_model(store: FeatureStore, job, trips: pd.DataFrame, training: pd.DataFrame) -> None:
    """Train on the training set, register the model with its lineage, alias it and predict over HTTP."""
    warnings.filterwarnings("ignore", message=".*httpx.*")  # starlette's TestClient nags about httpx2
    from fastapi.testclient import TestClient
    from sklearn.ensemble import HistGradientBoostingClassifier

    from featurestore.server import create_app

    job.save("trip_completion_train", overwrite=True)  # fingerprinted: definitions, entity rows, result
    X = training.drop(columns=trips.columns).astype("float64")
    y = training["trip_completed"]
    model = HistGradientBoostingClassifier(max_iter=50, random_state=0).fit(X, y)
    version = store.models.register(
        "trip_completion",
        model,
        feature_service="driver_activity",
        training_set="trip_completion_train",
        metrics={"train_accuracy": round(float(model.score(X, y)), 4)},
        params={"max_iter": 50},
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


if __name__ == "__main__":
    main()
