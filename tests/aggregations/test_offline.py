"""Offline time-window aggregations (SPEC §11) against the brute-force reference `tests.aggregations.oracle`.

One events source (`card_id`, Float64 `amount`, Int64 `qty`, String `cat`, event time, a nullable created
time) feeds three aggregating views that differ in tile size and windows, and one plain view:

    h1m   hop 1 min    windows 2m, 10m, lifetime
    h7m   hop 7 min    windows 10m, 1h, lifetime      (the hop divides neither window)
    h1h   hop 1 h      windows 30m, lifetime          (a window shorter than its hop)
    latest             the plain latest amount/qty/cat (no ttl)

Each aggregating view has every function that applies to each column, for each of its windows. Times
sit on a one-minute grid, so ties, duplicates, entity rows at an event's own time and times exactly on
tile edges are common; one base time crosses the Unix epoch (alignment must be a floor). Integers must
be equal, floats equal to rounding.
"""

from __future__ import annotations

import math
import random
import shutil
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import Aggregation, FeatureStore
from featurestore.offline.retrieval import get_historical_features
from tests.aggregations.oracle import Event, expected
from tests.repo_builder import make_repo, write_table

COLUMNS = {  # column -> (featurestore type, Arrow type, functions)
    "amount": (
        "Float64",
        pa.float64(),
        ("count", "sum", "mean", "min", "max", "std", "var", "first", "last", "count_distinct"),
    ),
    "qty": (
        "Int64",
        pa.int64(),
        ("count", "sum", "mean", "min", "max", "std", "var", "first", "last", "count_distinct"),
    ),
    "cat": ("String", pa.string(), ("count", "count_distinct", "min", "max", "first", "last")),
}
MINUTE = timedelta(minutes=1)
VIEWS: dict[str, tuple[timedelta, list[timedelta | None]]] = {
    "h1m": (MINUTE, [2 * MINUTE, 10 * MINUTE, None]),
    "h7m": (7 * MINUTE, [10 * MINUTE, 60 * MINUTE, None]),
    "h1h": (60 * MINUTE, [30 * MINUTE, None]),
}


def aggregations(view: str) -> list[Aggregation]:
    return [
        Aggregation(column, fn, window=w)
        for column, (_, _, fns) in COLUMNS.items()
        for fn in fns
        for w in VIEWS[view][1]
    ]


def _definitions() -> str:
    lines = [
        "from datetime import timedelta",
        "from featurestore import *",
        'card = Entity(name="card", join_keys=["card_id"])',
        'events = ParquetSource(name="events", path="data/events.parquet", created_timestamp_field="created")',
        "COLUMNS = [Field('card_id', Int64), "
        + ", ".join(f"Field('{c}', {t})" for c, (t, _, _) in COLUMNS.items())
        + "]",
        "latest = FeatureView(name='latest', entities=[card], source=events, schema=COLUMNS, online=False)",
    ]
    for name, (hop, _) in VIEWS.items():
        aggs = ", ".join(
            f"Aggregation('{a.column}', '{a.function}', window={_py(a.window)})" for a in aggregations(name)
        )
        lines.append(
            f"{name} = FeatureView(name='{name}', entities=[card], source=events, schema=COLUMNS, online=False, "
            f"hop={_py(hop)}, aggregations=[{aggs}])"
        )
    return "\n".join(lines) + "\n"


def _py(w: timedelta | None) -> str:
    return "None" if w is None else f"timedelta(seconds={int(w.total_seconds())})"


World = tuple[list[dict[str, Any]], list[dict[str, Any]]]  # events, entity rows
Request = tuple[list[tuple[str, list[str]]], bool]  # [(view, features)], full_feature_names
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
BASES = [datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(1969, 12, 31, 23, 30, tzinfo=timezone.utc)]
GRID_MINUTES = 90


def us(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


def source_table(events: list[dict[str, Any]]) -> pa.Table:
    utc = pa.timestamp("us", "UTC")
    return pa.table(
        {
            "card_id": pa.array([e["card_id"] for e in events], pa.int64()),
            **{c: pa.array([e[c] for e in events], t) for c, (_, t, _) in COLUMNS.items()},
            "event_timestamp": pa.array([e["ts"] for e in events], utc),
            "created": pa.array([e["created"] for e in events], utc),
        }
    )


def oracle_events(events: list[dict[str, Any]]) -> list[Event]:
    return [
        Event(
            keys=(e["card_id"],),
            event_us=us(e["ts"]),
            created_us=None if e["created"] is None else us(e["created"]),
            values={c: e[c] for c in COLUMNS},
        )
        for e in events
    ]


def same(got: Any, want: Any) -> bool:
    """Integers and strings equal (and of the same type), floats equal to rounding, nulls null."""
    if want is None or got is None:
        return got is None and want is None
    if isinstance(want, float):
        return isinstance(got, float) and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    return type(got) is type(want) and got == want


# -- generated data -----------------------------------------------------------------------------------


def maybe(strategy: st.SearchStrategy[Any], one_in: int = 5) -> st.SearchStrategy[Any]:
    """`strategy`, or None once in `one_in` draws."""
    return st.integers(0, one_in - 1).flatmap(lambda i: st.none() if i == 0 else strategy)


amounts = st.one_of(
    st.sampled_from([0.0, 1.5, -2.25, 3.0, 0.1, 7.0, math.nan]),  # NaN: skipped like a null
    st.floats(-1000, 1000, allow_nan=False, allow_infinity=False),
)
quantities = st.one_of(st.integers(-5, 5), st.sampled_from([2**40, -(2**40) + 3]))
categories = st.sampled_from(["", "a", "b", "é", "z"])


@st.composite
def world(draw: st.DrawFn, bases: list[datetime] = BASES) -> World:
    """Events (with duplicates and ties) and entity rows (often at an event's time, or a window or hop after)."""
    base = draw(st.sampled_from(bases))
    grid = st.integers(0, GRID_MINUTES).map(lambda m: base + m * MINUTE)
    offset = draw(st.sampled_from([0.0, 0.0, 1e9]))  # values near 1e9: std/var must stay exact

    @st.composite
    def event(draw: st.DrawFn) -> dict[str, Any]:
        amount = draw(maybe(amounts))
        return {
            "card_id": draw(maybe(st.sampled_from([1, 2]), one_in=12)),
            "ts": draw(grid),
            "created": draw(maybe(grid, one_in=3)),
            "amount": None if amount is None else (amount if not offset else offset + abs(amount) % 1),
            "qty": draw(maybe(quantities)),
            "cat": draw(maybe(categories)),
        }

    events = draw(st.lists(event(), min_size=0, max_size=25))
    for _ in range(draw(st.integers(0, 5)) if events else 0):
        original = draw(st.sampled_from(events))
        if draw(st.booleans()):
            events.append(dict(original))  # a duplicate event
        else:
            tie = draw(event())
            tie.update(card_id=original["card_id"], ts=original["ts"])
            if draw(st.booleans()):
                tie["created"] = original["created"]
            events.append(tie)
    events = draw(st.permutations(events))
    anchors = [e for e in events if e["card_id"] is not None]
    shifts = [0, 0, 30, 60, 120, 420, 600, 630, 1800, 3600, 4200]

    @st.composite
    def entity_row(draw: st.DrawFn) -> dict[str, Any]:
        row: dict[str, Any] = {
            "card_id": draw(maybe(st.sampled_from([1, 2, 3]), one_in=8)),
            "ts": draw(grid) + timedelta(seconds=draw(st.sampled_from([0, 0, 30]))),
            "label": draw(st.integers(0, 1)),
        }
        if anchors and draw(st.integers(0, 2)) > 0:
            anchor = draw(st.sampled_from(anchors))
            row.update(
                card_id=anchor["card_id"], ts=anchor["ts"] + timedelta(seconds=draw(st.sampled_from(shifts)))
            )
        return row

    rows = draw(st.lists(entity_row(), min_size=1, max_size=20))
    return events, rows


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """[(view, feature names)] (the plain view `latest` sometimes among them) and full_feature_names."""
    views = draw(st.lists(st.sampled_from([*VIEWS, "latest"]), min_size=1, max_size=3, unique=True))
    chosen = []
    for v in views:
        names = list(COLUMNS) if v == "latest" else [a.feature_name for a in aggregations(v)]
        chosen.append((v, draw(st.lists(st.sampled_from(names), min_size=1, max_size=12, unique=True))))
    return chosen, len(views) > 1 or draw(st.booleans())


def entity_df(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table(
        {
            "card_id": pa.array([r["card_id"] for r in rows], pa.int64()),
            "event_timestamp": pa.array([r["ts"] for r in rows], pa.timestamp("us", "UTC")),
            "label": [r["label"] for r in rows],
        }
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    root = make_repo(
        tmp_path_factory.mktemp("agg") / "repo",
        {"defs.py": _definitions()},
        {"data/events.parquet": source_table([])},
    )
    fs = FeatureStore(root)
    fs.apply()
    return fs


def check(
    store: FeatureStore,
    events: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    request: Request,
    bitemporal: bool,
) -> None:
    """get_historical_features == the oracle for the aggregating views; the plain view as when asked alone."""
    chosen, full = request
    refs = [f"{v}:{f}" for v, fs in chosen for f in fs]
    table = get_historical_features(store, entity_df(rows), refs, full, bitemporal=bitemporal).to_arrow()
    assert table.num_rows == len(rows)
    assert table.select(["card_id", "event_timestamp", "label"]).equals(entity_df(rows))
    keyed = [((r["card_id"],), us(r["ts"])) for r in rows]
    for view, features in chosen:
        names = [f"{view}__{f}" if full else f for f in features]
        if view == "latest":
            alone = get_historical_features(
                store, entity_df(rows), [f"latest:{f}" for f in features], bitemporal=bitemporal
            ).to_arrow()
            together = table.select(names).to_pylist()
            assert _nan_as_text(together) == _nan_as_text(
                alone.select(features).rename_columns(names).to_pylist()
            )
            continue
        by_name = {a.feature_name: a for a in aggregations(view)}
        hop_us = VIEWS[view][0] // timedelta(microseconds=1)
        want = expected(oracle_events(events), keyed, [by_name[f] for f in features], hop_us, bitemporal)
        for feature, name in zip(features, names):
            got = table.column(name).to_pylist()
            for i, (g, w) in enumerate(zip(got, want[feature])):
                assert same(g, w), f"{view}:{feature}, row {i} {rows[i]}: got {g!r}, want {w!r}"


def _nan_as_text(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with NaN written as "nan", so two answers holding NaN at the same places compare equal."""
    return [{k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in rows]


def examples(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@examples(120)
@given(data=world(), request=requests(), bitemporal=st.booleans())
def test_aggregates_from_the_source_match_the_oracle(
    store: FeatureStore, data: World, request: Request, bitemporal: bool
) -> None:
    events, rows = data
    write_table(store.repo_path / "data" / "events.parquet", source_table(events))
    shutil.rmtree(store.config.offline_path, ignore_errors=True)
    check(store, events, rows, request, bitemporal)


@examples(25)
@given(data=world(bases=BASES[:1]), request=requests(), bitemporal=st.booleans())
def test_aggregates_from_materialized_storage_match_the_oracle(
    tmp_path_factory: pytest.TempPathFactory, data: World, request: Request, bitemporal: bool
) -> None:
    events, rows = data
    root = make_repo(
        tmp_path_factory.mktemp("stored") / "repo",
        {"defs.py": _definitions()},
        {"data/events.parquet": source_table(events)},
    )
    store = FeatureStore(root)
    store.apply()
    store.materialize(BASES[0] - timedelta(days=1), BASES[0] + timedelta(days=1), views=[*VIEWS, "latest"])
    # The source has a created time, so the stored range stays current: empty the source to be sure
    # that the answer comes from storage.
    write_table(root / "data" / "events.parquet", source_table([]))
    check(store, events, rows, request, bitemporal)


@st.composite
def dense_world(draw: st.DrawFn) -> World:
    """Many events of one card within a few minutes, amounts 1e9 + [0, 1) (or + 1e9 * [0, 1)) and qty
    up to 2**40 + 5: what breaks a streaming or sum-of-squares variance."""
    base = BASES[0]
    spread = draw(st.sampled_from([1.0, 1e9]))
    n = draw(st.integers(2, 60))
    events = [
        {
            "card_id": 1,
            "ts": base + timedelta(seconds=draw(st.integers(0, 600))),
            "created": None,
            "amount": 1e9 + spread * draw(st.floats(0, 1, exclude_max=True)),
            "qty": 2**40 + draw(st.integers(0, 5)),
            "cat": None,
        }
        for _ in range(n)
    ]
    rows = [
        {"card_id": 1, "ts": base + timedelta(seconds=draw(st.integers(0, 700))), "label": 0}
        for _ in range(5)
    ]
    return events, rows


@examples(40)
@given(data=dense_world(), view=st.sampled_from(sorted(VIEWS)))
def test_std_and_var_of_large_values_match_the_oracle(store: FeatureStore, data: World, view: str) -> None:
    events, rows = data
    write_table(store.repo_path / "data" / "events.parquet", source_table(events))
    shutil.rmtree(store.config.offline_path, ignore_errors=True)
    features = [
        a.feature_name
        for a in aggregations(view)
        if a.function in ("std", "var", "mean", "sum") and a.column in ("amount", "qty")
    ]
    check(store, events, rows, ([(view, features)], False), False)


def test_std_and_var_stay_exact_for_values_near_1e9(store: FeatureStore) -> None:
    """Welford or sums of squares lose ~1e-7 relative here; the two-pass form keeps rounding error."""
    rng = random.Random(5)
    t0 = BASES[0]
    events = [
        {
            "card_id": 1,
            "ts": t0 + timedelta(seconds=i),
            "created": None,
            "amount": 1e9 + rng.random(),
            "qty": None,
            "cat": None,
        }
        for i in range(600)
    ]
    rows = [{"card_id": 1, "ts": t0 + timedelta(seconds=s), "label": 0} for s in (3, 100, 599, 600, 4000)]
    features = ["amount_std_10m", "amount_var_10m", "amount_std", "amount_var", "amount_mean", "amount_sum"]
    write_table(store.repo_path / "data" / "events.parquet", source_table(events))
    shutil.rmtree(store.config.offline_path, ignore_errors=True)
    check(store, events, rows, ([("h1m", features)], False), False)


def test_only_the_requested_aggregates_are_computed() -> None:
    """A request of one aggregate of a view of many computes that one: the SQL names nothing else."""
    from featurestore.offline.aggregate import aggregate_sql
    from featurestore.offline.pit import ENTITY_TS, ROW_ID, PitView
    from featurestore.types import Float64

    one = Aggregation("amount", "mean", window=timedelta(hours=1))
    view = PitView(
        name="h7m",
        rows_sql="SELECT * FROM events",
        join_keys=("card_id",),
        features=(one.feature_name,),
        output_names=(one.feature_name,),
        tie_break=(),
        aggregations=(one,),
        input_types=(Float64,),
        hop_us=420_000_000,
    )
    sql = aggregate_sql("__entity", view, ROW_ID, ENTITY_TS, False, None)
    assert sql.count('AS "') == 1  # the one output column
    assert "qty" not in sql and "cat" not in sql and sql.count("fsum(") == 1
