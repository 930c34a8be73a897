"""How the trip-completion model retrains itself: `fs retrain trip_completion` (SPEC §13).

The spine `trips` gives entity rows with the label; the run builds the training set with the
features of `driver_activity`, trains on the oldest 80% of the spine's last two days and validates
on the newest 20%. A candidate passes when its validation accuracy is at least as good as the
current production version's on the same rows, without losing more than 0.02 of ROC AUC; it then
waits for an approver (`fs models pending`, `fs models approve trip_completion VERSION`).
"""

from datetime import timedelta

from featurestore import training_pipeline

FEATURES = [
    "conv_rate",
    "acc_rate",
    "avg_daily_trips",
    "current_balance",
    "avg_passenger_count",
    "lifetime_trip_count",
    "trips_1d",
    "fare_sum_1d",
    "distance_km_mean_7d",
    "distance_vs_usual",
    "long_trip",
]
# Shallower trees and a slower rate than the demo's hand-trained model (definitions/demo.py, step 3)
PARAMS = {"max_iter": 50, "max_depth": 2, "min_samples_leaf": 100, "learning_rate": 0.05, "random_state": 0}


@training_pipeline(
    model="trip_completion",
    features="driver_activity",
    spine="trips",
    label="trip_completed",
    metric="accuracy",
    guards={"roc_auc": 0.02},
    lookback=timedelta(days=2),  # the example data's windows are full only in its last days
    params=PARAMS,
    missing_policy="null",
    approval="required",  # production moves when an approver says so
    description="Will the trip be completed?",
)
def train(train_df, valid_df):
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = train_df[FEATURES].astype("float64")
    return HistGradientBoostingClassifier(**PARAMS).fit(X, train_df["trip_completed"])
