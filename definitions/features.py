"""Feature views of the rides project, and the services models use."""

from datetime import timedelta

from entities import customer, driver, route

from featurestore import (
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
    String,
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

driver_activity = FeatureService(
    name="driver_activity",
    features=[
        driver_hourly_stats[["conv_rate", "acc_rate", "avg_daily_trips"]],
        customer_profile[["current_balance", "avg_passenger_count", "lifetime_trip_count"]],
    ],
    description="Features of the trip-completion model",
)
