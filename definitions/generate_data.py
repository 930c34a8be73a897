"""Deterministic example data for the rides repo: `python definitions/generate_data.py [--end ISO]`.

Values come from a seeded generator, so every run writes the same rows for the same --end.
Timestamps end at --end (default: today, 00:00 UTC), so the online store holds fresh values.
Writes data/driver_stats.parquet, data/customer_profile.parquet, data/route_stats.csv,
data/trips.parquet (entity rows with a label, for training sets), data/trip_events.parquet (one row
per finished trip, for windowed aggregations) and data/fresh_rows.parquet (newer
driver statistics for `fs push driver_stats_push`, as an application would push them).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
DRIVERS = np.arange(1001, 1501)  # 500 drivers
CUSTOMERS = np.arange(5001, 7001)  # 2,000 customers
ZONES = np.arange(1, 9)  # 8 zones -> 64 routes
DAYS = 7


def generate(end: datetime, out: Path = HERE / "data") -> None:
    rng = np.random.default_rng(42)
    out.mkdir(parents=True, exist_ok=True)
    end = end.astimezone(timezone.utc).replace(tzinfo=None)  # numpy datetimes are naive; these are UTC
    start = end - timedelta(days=DAYS)
    hours = [start + timedelta(hours=h) for h in range(1, DAYS * 24 + 1)]

    # Driver statistics: one row per driver per hour, created a few minutes after the hour.
    n = len(DRIVERS) * len(hours)
    ts = np.repeat(np.array(hours, dtype="datetime64[us]"), len(DRIVERS))
    pq.write_table(
        pa.table(
            {
                "driver_id": pa.array(np.tile(DRIVERS, len(hours)), pa.int64()),
                "event_timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
                "created": pa.array(ts + np.timedelta64(5, "m"), pa.timestamp("us", tz="UTC")),
                "conv_rate": rng.random(n).round(4),
                "acc_rate": rng.random(n).round(4),
                "avg_daily_trips": rng.integers(0, 40, n),
                "vehicle_type": rng.choice(["sedan", "suv", "van"], n),
            }
        ),
        out / "driver_stats.parquet",
    )

    # Customer profiles: one snapshot per customer per day.
    days = [start + timedelta(days=d) for d in range(1, DAYS + 1)]
    m = len(CUSTOMERS) * len(days)
    zones = [rng.choice(ZONES, size=rng.integers(0, 4), replace=False).tolist() for _ in range(m)]
    pq.write_table(
        pa.table(
            {
                "customer_id": pa.array(np.tile(CUSTOMERS, len(days)), pa.int64()),
                "event_timestamp": pa.array(
                    np.repeat(np.array(days, dtype="datetime64[us]"), len(CUSTOMERS)),
                    pa.timestamp("us", tz="UTC"),
                ),
                "current_balance": pa.array(rng.normal(50, 20, m).round(2), pa.float32()),
                "avg_passenger_count": rng.uniform(1, 3, m).round(2),
                "lifetime_trip_count": rng.integers(0, 500, m),
                "favourite_zones": pa.array(zones, pa.list_(pa.int64())),
            }
        ),
        out / "customer_profile.parquet",
    )

    # Route statistics (CSV): every route, every 3 hours.
    routes = [(o, d) for o in ZONES for d in ZONES if o != d]
    slots = hours[::3]
    k = len(routes) * len(slots)
    pacsv.write_csv(
        pa.table(
            {
                "origin_id": pa.array([o for _ in slots for o, _ in routes], pa.int64()),
                "destination_id": pa.array([d for _ in slots for _, d in routes], pa.int64()),
                "event_timestamp": pa.array([t for t in slots for _ in routes], pa.timestamp("us", tz="UTC")),
                "avg_duration_min": rng.uniform(5, 60, k).round(1),
                "trips_last_hour": rng.integers(0, 30, k),
            }
        ),
        out / "route_stats.csv",
    )

    # Trips: the entity rows of a training set, with a label and the trip's distance (a request value).
    # Long trips are completed less often, so a model has something to learn.
    t = 10_000
    trip_ts = start + timedelta(hours=2) + (end - start - timedelta(hours=2)) * rng.random(t)
    drivers, customers = rng.choice(DRIVERS, t), rng.choice(CUSTOMERS, t)
    distance = rng.gamma(2.0, 4.0, t).round(2)
    completed = rng.random(t) < np.clip(1.0 - 0.025 * distance, 0.3, 0.97)
    pq.write_table(
        pa.table(
            {
                "driver_id": pa.array(drivers, pa.int64()),
                "customer_id": pa.array(customers, pa.int64()),
                "event_timestamp": pa.array(trip_ts.astype("datetime64[us]"), pa.timestamp("us", tz="UTC")),
                "distance_km": distance,
                "trip_completed": pa.array(completed, pa.bool_()),
            }
        ),
        out / "trips.parquet",
    )

    # Trip events: one row per finished trip (the raw events windowed aggregations read), about 60 a
    # day per driver, ending at --end; a few fares are missing.
    e = len(DRIVERS) * 60 * DAYS
    event_ts = np.sort(
        np.array(start, dtype="datetime64[us]")
        + (rng.random(e) * DAYS * 86_400_000_000).astype("timedelta64[us]")
    )
    fares = rng.gamma(3.0, 6.0, e).round(2)
    pq.write_table(
        pa.table(
            {
                "driver_id": pa.array(rng.choice(DRIVERS, e), pa.int64()),
                "event_timestamp": pa.array(event_ts, pa.timestamp("us", tz="UTC")),
                "created": pa.array(event_ts + np.timedelta64(1, "s"), pa.timestamp("us", tz="UTC")),
                "fare": pa.array(fares, mask=rng.random(e) < 0.02),
                "distance_km": rng.gamma(2.0, 4.0, e).round(2),
                "zone": pa.array(rng.choice(ZONES, e), pa.int64()),
            }
        ),
        out / "trip_events.parquet",
    )

    # Fresh rows an application pushes (README: fs push): three drivers, half an hour after --end, or
    # now if that is sooner (rows pushed online may not be from the future).
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    fresh = np.array([min(end + timedelta(minutes=30), now)] * 3, dtype="datetime64[us]")
    pq.write_table(
        pa.table(
            {
                "driver_id": pa.array(DRIVERS[:3], pa.int64()),
                "event_timestamp": pa.array(fresh, pa.timestamp("us", tz="UTC")),
                "created": pa.array(fresh, pa.timestamp("us", tz="UTC")),
                "conv_rate": rng.random(3).round(4),
                "acc_rate": rng.random(3).round(4),
                "avg_daily_trips": rng.integers(0, 40, 3),
                "vehicle_type": rng.choice(["sedan", "suv", "van"], 3),
            }
        ),
        out / "fresh_rows.parquet",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    parser.add_argument("--end", default=today.isoformat(), help="last event time (default: today 00:00 UTC)")
    args = parser.parse_args()
    end = datetime.fromisoformat(args.end)
    end = end if end.tzinfo else end.replace(tzinfo=timezone.utc)
    generate(end)
    print(f"Generated example data in {HERE / 'data'} ending {end.isoformat()}")


if __name__ == "__main__":
    main()
