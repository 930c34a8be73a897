"""get_historical_features against a brute-force reference of SPEC §6 on hypothesis-generated data.

The reference below is the specification read literally, one entity row and one view at a time:
keep the feature rows with equal keys (a null key matches nothing), with row ts - ttl <= event ts <= row ts
(and, bitemporal, created <= row ts, a missing created time counting as the event time), then take
the greatest by (event ts, created ts with null lowest, the view's feature values in declared order
with null lowest and NaN above every number).

Timestamps sit on a one-minute grid across midnight, so equal event times, equal created times and
rows exactly on a ttl edge are common. Each example runs every join strategy, over the sources or
over offline storage, with naive or aware timestamps, pandas or Arrow entity rows.
"""

from __future__ import annotations

import math
import shutil
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.offline.retrieval import get_historical_features
from tests.offline.pit_repo import (
    SOURCES,
    VIEWS,
    build_store,
    view_features,
    view_keys,
    write_rows,
    write_storage,
)

BASE = datetime(2026, 1, 1, 23, 50, tzinfo=timezone.utc)  # the grid crosses midnight: two storage partitions
MINUTES = 16


# -- the reference ------------------------------------------------------------------------------------


def value_key(value):
    """Order of feature values in the final tie-break: null lowest, NaN above every number."""
    if value is None:
        return (0,)
    if isinstance(value, float) and math.isnan(value):
        return (2,)
    return (1, value)


def reference(entity_rows, requests, feature_rows, bitemporal):
    """Expected feature values: one dict per entity row, {output name: value}."""
    out = []
    for row in entity_rows:
        values = {}
        for view, features, names in requests:
            source, ttl = VIEWS[view]
            keys = view_keys(view)
            candidates = []
            for f in feature_rows[source]:
                if any(row[k] is None for k in keys) or any(f[k] != row[k] for k in keys):
                    continue
                if f["ts"] is None or f["ts"] > row["ts"]:
                    continue
                if ttl is not None and f["ts"] < row["ts"] - ttl:
                    continue
                if bitemporal and (f["created"] or f["ts"]) > row["ts"]:
                    continue
                candidates.append(f)
            best = None
            if candidates:
                best = max(
                    candidates,
                    key=lambda f: (
                        f["ts"],
                        value_key(f["created"]),
                        *(value_key(f[n]) for n in view_features(view)),
                    ),
                )
            for feature, name in zip(features, names):
                values[name] = None if best is None else best[feature]
        out.append(values)
    return out


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


# -- generated data -----------------------------------------------------------------------------------

grid_times = st.integers(0, MINUTES).map(lambda m: BASE + timedelta(minutes=m))


def maybe(strategy, one_in=6):
    """`strategy`, or None once in `one_in` draws (st.one_of would pick None far more often)."""
    return st.sampled_from(range(one_in)).flatmap(lambda i: st.none() if i == 0 else strategy)


user_ids = st.sampled_from([1, 2])
origins = st.sampled_from(["a", "b"])
dests = st.sampled_from([1, 2])


@st.composite
def feature_row(draw, source):
    row = {
        "ts": draw(maybe(grid_times, one_in=10)),
        "created": draw(maybe(grid_times, one_in=3)) if SOURCES[source]["created"] else None,
    }
    if source == "user":
        row.update(
            user_id=draw(maybe(user_ids)),
            u_int=draw(maybe(st.integers(-2, 2))),
            u_float=draw(maybe(st.sampled_from([0.0, 1.5, -2.25, math.inf, math.nan]))),
            u_str=draw(maybe(st.sampled_from(["", "a", "b", "é"]))),
            u_bool=draw(maybe(st.booleans())),
        )
    else:
        row.update(
            origin=draw(maybe(origins)),
            dest=draw(maybe(dests)),
            r_int=draw(maybe(st.integers(-2, 2))),
            r_str=draw(maybe(st.sampled_from(["x", "y"]))),
        )
    return row


@st.composite
def entity_row(draw, anchors=()):
    """An entity row; with anchors, often one with the keys of a feature row and a time on its ttl edges."""
    row = {
        "user_id": draw(maybe(st.sampled_from([1, 2, 3, 4]))),
        "origin": draw(maybe(st.sampled_from(["a", "b", "c"]))),
        "dest": draw(maybe(dests)),
        "ts": draw(grid_times) + timedelta(seconds=draw(st.sampled_from([0, 0, 30]))),
        "label": draw(st.integers(0, 1)),
        "note": draw(maybe(st.text("xyz", max_size=2))),
    }
    anchors = [a for a in anchors if a["ts"] is not None]
    if anchors and draw(st.integers(0, 3)):
        anchor = draw(st.sampled_from(anchors))
        row.update({k: anchor[k] for k in ("user_id", "origin", "dest") if k in anchor})
        row["ts"] = anchor["ts"] + timedelta(seconds=draw(st.sampled_from([0, 30, 60, 120, 150, 180, 240])))
    return row


@st.composite
def world(draw):
    """Feature rows per source, with rows tied on keys and event time (and often created time), and entity rows."""
    rows = {}
    for source, size in (("user", 12), ("route", 10)):
        base = draw(st.lists(feature_row(source), min_size=2, max_size=size))
        for _ in range(draw(st.integers(0, 4))):
            original = draw(st.sampled_from(base))
            tie = draw(feature_row(source))
            tie.update({k: original[k] for k in SOURCES[source]["keys"]}, ts=original["ts"])
            if draw(st.booleans()):
                tie["created"] = original["created"]
            base.append(tie)
        rows[source] = draw(st.permutations(base))
    entity_rows = draw(st.lists(entity_row(rows["user"] + rows["route"]), min_size=4, max_size=30))
    return rows, entity_rows


@st.composite
def requests(draw):
    """[(view, features, output names)] and full_feature_names."""
    views = draw(st.lists(st.sampled_from(sorted(VIEWS)), min_size=1, max_size=4, unique=True))
    chosen = [(v, draw(st.lists(st.sampled_from(view_features(v)), min_size=1, unique=True))) for v in views]
    full = len(views) > 1 or draw(st.booleans())  # views over one source share feature names
    return [(v, fs, [f"{v}__{f}" if full else f for f in fs]) for v, fs in chosen], full


ZONES = {
    "UTC": timezone.utc,
    "America/New_York": ZoneInfo("America/New_York"),
    "+05:30": timezone(timedelta(hours=5, minutes=30)),
}


def entity_table(rows, fmt, zone):
    """Entity rows as pandas or Arrow, with times naive (UTC) or in `zone`."""
    times = [r["ts"].replace(tzinfo=None) if zone is None else r["ts"].astimezone(ZONES[zone]) for r in rows]
    columns = {
        "user_id": [r["user_id"] for r in rows],
        "origin": [r["origin"] for r in rows],
        "dest": [r["dest"] for r in rows],
        "event_timestamp": times,
        "label": [r["label"] for r in rows],
        "note": [r["note"] for r in rows],
    }
    if fmt == "arrow":
        return pa.table(
            {
                **columns,
                "user_id": pa.array(columns["user_id"], pa.int64()),
                "dest": pa.array(columns["dest"], pa.int64()),
                "event_timestamp": pa.array(times, pa.timestamp("us", zone)),
            }
        )
    df = pd.DataFrame(columns)
    df["user_id"] = df["user_id"].astype("Int64")  # as a pandas user with missing ids would have them
    df["dest"] = df["dest"].astype("float64")  # ... or as pandas makes them by default
    df["event_timestamp"] = (
        pd.to_datetime(df["event_timestamp"]) if rows else pd.Series([], dtype="datetime64[us]")
    )
    return df


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("pit") / "repo")


@settings(max_examples=90, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=world(),
    request=requests(),
    bitemporal=st.booleans(),
    fmt=st.sampled_from(["arrow", "pandas"]),
    zone=st.sampled_from([None, *ZONES]),
    source_zone=st.sampled_from([None, "UTC", "+05:30"]),
    stored=st.sets(st.sampled_from(sorted(VIEWS))),
)
def test_training_sets_match_the_reference(store, data, request, bitemporal, fmt, zone, source_zone, stored):
    feature_rows, rows = data
    write_rows(store.repo_path, feature_rows, tz=source_zone)
    shutil.rmtree(store.config.offline_path, ignore_errors=True)
    for view in stored:  # these views read offline storage holding the same rows
        write_storage(store, view, feature_rows[VIEWS[view][0]])
    reqs, full = request
    refs = [f"{v}:{f}" for v, fs, _ in reqs for f in fs]
    entity_df = entity_table(rows, fmt, zone)
    given_table = entity_df if fmt == "arrow" else pa.Table.from_pandas(entity_df, preserve_index=False)
    expected = reference(rows, reqs, feature_rows, bitemporal)
    names = [n for _, _, ns in reqs for n in ns]

    for strategy in ("auto", "range") if bitemporal else ("auto", "range", "asof"):
        job = get_historical_features(
            store, entity_df, refs, full_feature_names=full, bitemporal=bitemporal, strategy=strategy
        )
        result = job.to_arrow()
        assert result.column_names == [*given_table.column_names, *names]
        assert result.select(given_table.column_names).equals(given_table), "entity columns changed"
        got = result.select(names).to_pylist()
        assert len(got) == len(expected)
        for i, (g, e) in enumerate(zip(got, expected)):
            assert all(same(g[n], e[n]) for n in names), (
                f"strategy {strategy}, row {i} ({rows[i]}): {g} != {e}"
            )
