"""Feature views of the rides project, and the services models use."""

from datetime import timedelta

from entities import customer, driver, route

from featurestore import (
    Aggregation,
    Array,
    CsvSource,
    FeatureService,
    FeatureView,
    Field,
    Float32,
    Float64,
    Int64,
    ParquetSource,
    PushSource,
    RequestSource,
    String,
    on_demand_feature_view,
)

driver_stats = ParquetSource(
    name="driver_stats",
    path="data/driver_stats.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_field="created",
    description="Hourly driver statistics computed by the batch pipeline",
)
# Apps push fresh driver statistics here; materialization reads the batch source.
driver_stats_push = PushSource(name="driver_stats_push", batch_source=driver_stats)

driver_hourly_stats = FeatureView(
    name="driver_hourly_stats",
    entities=[driver],
    ttl=timedelta(days=1),
    schema=[
        Field("conv_rate", Float64, description="Share of offers the driver converted"),
        Field("acc_rate", Float64, description="Share of offers the driver accepted"),
        Field("avg_daily_trips", Int64),
        Field("vehicle_type", String),
    ],
    source=driver_stats_push,
    online=True,
    owner="rides-ml@example.com",
    tags={"team": "rides"},
    description="Driver quality, refreshed hourly",
)

customer_profile = FeatureView(
    name="customer_profile",
    entities=[customer],
    ttl=timedelta(days=30),
    schema=[
        Field("current_balance", Float32),
        Field("avg_passenger_count", Float64),
        Field("lifetime_trip_count", Int64),
        Field("favourite_zones", Array(Int64)),
    ],
    source=ParquetSource(
        name="customer_profiles", path="data/customer_profile.parquet", timestamp_field="event_timestamp"
    ),
    owner="growth@example.com",
    tags={"team": "growth"},
)

route_stats = FeatureView(
    name="route_stats",
    entities=[route],
    ttl=timedelta(hours=6),
    schema=[Field("avg_duration_min", Float64), Field("trips_last_hour", Int64)],
    source=CsvSource(name="route_stats_csv", path="data/route_stats.csv", timestamp_field="event_timestamp"),
    owner="eta@example.com",
)

# Raw events: one row per finished trip. The view below aggregates them over time windows, offline
# (training sets) and online (tiles merged at read time); apps push new trips through the push source.
trip_events = ParquetSource(
    name="trip_events",
    path="data/trip_events.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_field="created",
    description="Finished trips, one row each",
)
trip_events_push = PushSource(name="trip_events_push", batch_source=trip_events)

driver_trip_activity = FeatureView(
    name="driver_trip_activity",
    entities=[driver],
    source=trip_events_push,
    aggregations=[
        Aggregation("fare", "count", window=timedelta(days=1), name="trips_1d"),
        Aggregation("fare", "sum", window=timedelta(days=1)),  # fare_sum_1d
        Aggregation("distance_km", "mean", window=timedelta(days=7)),  # distance_km_mean_7d
        Aggregation("fare", "max", window=timedelta(days=7)),
        Aggregation("zone", "count_distinct", window=timedelta(days=7)),
        Aggregation("zone", "last"),  # lifetime: the zone of the driver's latest trip
    ],
    hop=timedelta(minutes=5),
    owner="rides-ml@example.com",
    description="What each driver did lately, from raw trip events",
)

# A request value: sent with each lookup (a field of the entity row) or, offline, an entity_df column.
trip_request = RequestSource(name="trip_request", schema=[Field("distance_km", Float64)])


@on_demand_feature_view(
    sources=[driver_hourly_stats[["conv_rate"]], driver_trip_activity[["distance_km_mean_7d"]], trip_request],
    schema=[Field("distance_vs_usual", Float64), Field("long_trip", Int64)],
    description="How this trip compares with the driver's usual ones; computed per request",
)
def trip_shape(row: dict) -> dict:
    usual = row["distance_km_mean_7d"]
    ratio = row["distance_km"] / usual if usual else None
    return {"distance_vs_usual": ratio, "long_trip": int(row["distance_km"] > 15)}


# The entity rows of training sets with their label: a spine (get_historical_features(spine="trips")).
trips = ParquetSource(name="trips", path="data/trips.parquet", description="Trips and whether they completed")

driver_activity = FeatureService(
    name="driver_activity",
    features=[
        driver_hourly_stats[["conv_rate", "acc_rate", "avg_daily_trips"]],
        customer_profile[["current_balance", "avg_passenger_count", "lifetime_trip_count"]],
        driver_trip_activity[["trips_1d", "fare_sum_1d", "distance_km_mean_7d"]],
        trip_shape,
    ],
    description="Features of the trip-completion model",
)
