"""A small feature repo for point-in-time tests, and writers for its data (source files or offline storage).

Two entities (`user`: one key; `route`: a composite key `origin` + `dest`), two sources (`user_src`
has a created timestamp, `route_src` has none) and four views over them, with and without ttl:

    user_none   user   ttl None      u_int Int64, u_float Float64, u_str String, u_bool Bool
    user_2m     user   ttl 2 min     (same features, same source)
    route_3m    route  ttl 3 min     r_int Int32, r_str String
    route_none  route  ttl None      (same features, same source)

and a service `trip_features` = user_2m[["u_int", "u_str"]] + route_3m.

Feature rows are plain dicts: the view's keys, its features, `ts` and `created` (aware datetimes or None).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore import FeatureStore
from featurestore.offline.storage import DATA_FILE
from tests.repo_builder import make_repo, write_table

DEFINITIONS = """
from datetime import timedelta
from featurestore import *

user = Entity(name="user", join_keys=["user_id"])
route = Entity(name="route", join_keys=["origin", "dest"])
user_src = ParquetSource(name="user_src", path="data/user.parquet", created_timestamp_field="created")
route_src = ParquetSource(name="route_src", path="data/route.parquet")

USER = [Field("user_id", Int64), Field("u_int", Int64), Field("u_float", Float64), Field("u_str", String),
        Field("u_bool", Bool)]
ROUTE = [Field("origin", String), Field("dest", Int64), Field("r_int", Int32), Field("r_str", String)]

user_none = FeatureView(name="user_none", entities=[user], ttl=None, schema=USER, source=user_src, online=False)
user_2m = FeatureView(name="user_2m", entities=[user], ttl=timedelta(minutes=2), schema=USER, source=user_src,
                      online=False)
route_3m = FeatureView(name="route_3m", entities=[route], ttl=timedelta(minutes=3), schema=ROUTE,
                       source=route_src, online=False)
route_none = FeatureView(name="route_none", entities=[route], schema=ROUTE, source=route_src, online=False)
trip_features = FeatureService(name="trip_features", features=[user_2m[["u_int", "u_str"]], route_3m])
"""

SOURCES = {
    "user": {
        "keys": {"user_id": pa.int64()},
        "features": {
            "u_int": pa.int64(),
            "u_float": pa.float64(),
            "u_str": pa.string(),
            "u_bool": pa.bool_(),
        },
        "created": True,
        "file": "data/user.parquet",
    },
    "route": {
        "keys": {"origin": pa.string(), "dest": pa.int64()},
        "features": {"r_int": pa.int32(), "r_str": pa.string()},
        "created": False,
        "file": "data/route.parquet",
    },
}
VIEWS = {  # name -> (source, ttl)
    "user_none": ("user", None),
    "user_2m": ("user", timedelta(minutes=2)),
    "route_3m": ("route", timedelta(minutes=3)),
    "route_none": ("route", None),
}


def view_keys(view: str) -> list[str]:
    return list(SOURCES[VIEWS[view][0]]["keys"])


def view_features(view: str) -> list[str]:
    return list(SOURCES[VIEWS[view][0]]["features"])


def build_store(root: Path) -> FeatureStore:
    """The repo on disk with empty sources, applied."""
    path = make_repo(
        root, {"defs.py": DEFINITIONS}, {s["file"]: _table(name, [], None) for name, s in SOURCES.items()}
    )
    store = FeatureStore(path)
    store.apply()
    return store


def write_rows(root: Path, rows: dict[str, list[dict[str, Any]]], tz: str | None = "UTC") -> None:
    """Replace each source's file with `rows` (per source name); timestamps written naive (UTC) when tz is None."""
    for name, spec in SOURCES.items():
        write_table(root / spec["file"], _table(name, rows.get(name, []), tz))


def write_storage(store: FeatureStore, view: str, rows: list[dict[str, Any]]) -> None:
    """Write `rows` as the view's offline storage, in the internal shape, one file per UTC day."""
    spec = SOURCES[VIEWS[view][0]]
    by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["ts"] is not None:  # storage never holds rows without an event time
            by_day[r["ts"].astimezone(timezone.utc).date().isoformat()].append(r)
    for day, day_rows in by_day.items():
        columns = {
            k: pa.array([r[k] for r in day_rows], t) for k, t in {**spec["keys"], **spec["features"]}.items()
        }
        columns["__event_ts"] = pa.array([r["ts"] for r in day_rows], pa.timestamp("us", "UTC"))
        columns["__created_ts"] = pa.array([r.get("created") for r in day_rows], pa.timestamp("us", "UTC"))
        path = store.offline_storage.view_dir(view) / f"date={day}" / DATA_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), path)


def _table(name: str, rows: list[dict[str, Any]], tz: str | None) -> pa.Table:
    spec = SOURCES[name]
    columns = {k: pa.array([r[k] for r in rows], t) for k, t in {**spec["keys"], **spec["features"]}.items()}
    stamps = {"event_timestamp": "ts", "created": "created"} if spec["created"] else {"event_timestamp": "ts"}
    for column, field in stamps.items():
        columns[column] = pa.array([_as_tz(r[field], tz) for r in rows], pa.timestamp("us", tz))
    return pa.table(columns)


def _as_tz(value: datetime | None, tz: str | None) -> datetime | None:
    if value is None:
        return None
    utc = value.astimezone(timezone.utc)
    return utc.replace(tzinfo=None) if tz is None else utc
