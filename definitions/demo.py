"""The demo `make demo` runs after generating data, `fs apply` and `fs materialize-incremental`:
a training set from the trips, online lookups, then a model trained, registered, promoted and served.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from featurestore import FeatureStore

HERE = Path(__file__).resolve().parent


def main() -> None:
    pd.set_option("display.width", 140)
    pd.set_option("display.max_columns", 12)
    store = FeatureStore(HERE)

    print("\n== 1. A point-in-time-correct training set (notebook path) ==")
    trips = pd.read_parquet(HERE / "data" / "trips.parquet")
    job = store.get_historical_features(trips, features="driver_activity")
    training = job.to_pandas()
    print(training.head(8).to_string(index=False))
    print(f"{len(training):,} rows; rows without driver features: {training['conv_rate'].isna().sum()}")

    print("\n== 2. Online lookups (serving path) ==")
    response = store.get_online_features(
        features="driver_activity",
        entity_rows=[{"driver_id": 1001, "customer_id": 5001}, {"driver_id": 1002, "customer_id": 5002},
                     {"driver_id": 9999, "customer_id": 5003}],
    )
    print(response.to_pandas().to_string(index=False))


if __name__ == "__main__":
    main()
