"""Materialization: source rows -> offline storage (Parquet by day) -> latest row per entity online.

    materialize(store, "2026-01-01", "2026-01-31")      # START <= event time <= END, both inclusive
    materialize_incremental(store)                      # from each view's watermark up to now

Per view, in order: the selected source rows are copied once into a staging folder (DuckDB
streams them: memory stays bounded); the latest row per entity is streamed from there to the
online store (which keeps the newest row, so re-runs and out-of-order runs are safe); the staged
days replace the matching rows of offline storage, one atomic file rename per day; only then is
the run recorded and the watermark moved forward. A run killed anywhere leaves storage that the
same run, started again, brings to the same end state. An aggregating view goes online after the
commit: its tiles are rebuilt from the events training sets read, in the run's range widened to tile periods
(`featurestore.online.tile_writer`).

The online store in use has watermarks of its own, keyed by the identity marker it holds: an
incremental run into a store that is new, emptied or behind also writes the latest rows of the
source since that store's watermark (see docs/decisions.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .definitions import FeatureView, PushSource
from .errors import MaterializationError, unknown
from .offline.features import CREATED_TS, EVENT_TS, latest_first, source_rows_sql, ts_literal
from .offline.fingerprint import source_fingerprint
from .offline.sources import SourceReader, arrow_batches, arrow_table, duckdb_connection, quote_ident
from .offline.storage import PUSHED, days_between

if TYPE_CHECKING:
    from .store import FeatureStore

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
CLOCK_SKEW = timedelta(minutes=1)
MEMORY_LIMIT = "256MB"


@dataclass(frozen=True)
class ViewRun:
    """What one view's materialization did."""

    view: str
    start: datetime
    end: datetime
    rows: int = 0  # source rows selected and written offline
    online_rows: int = 0  # entity rows written to the online store
    seconds: float = 0.0
    skipped: str = ""  # why nothing was done (or nothing recorded), if so
    recorded: bool = True  # False: rows were written from a definition an apply changed meanwhile
    stats_seconds: float = 0.0  # of `seconds`: computing the feature statistics of the run's rows


@dataclass
class MaterializeResult:
    runs: list[ViewRun] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.runs)

    @property
    def online_rows(self) -> int:
        return sum(r.online_rows for r in self.runs)

    @property
    def unrecorded(self) -> list[str]:
        """Views whose run was not recorded (an apply changed them meanwhile): run them again."""
        return [r.view for r in self.runs if not r.recorded]

    def __str__(self) -> str:
        lines = []
        for r in self.runs:
            if r.skipped:
                lines.append(f"{r.view}: skipped ({r.skipped})")
            else:
                since = "the beginning" if r.start == EPOCH else r.start.isoformat(timespec="seconds")
                lines.append(
                    f"{r.view}: {r.rows:,} rows offline, {r.online_rows:,} entity rows online "
                    f"(event times from {since} to {r.end.isoformat(timespec='seconds')}) in {r.seconds:.2f}s"
                )
        return "\n".join(lines)


def parse_time(value: Any, what: str) -> datetime:
    """A datetime, date, pandas Timestamp or ISO string as an aware UTC datetime (naive = UTC)."""
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise MaterializationError(
                f"{what} {value!r} is not an ISO date or datetime (e.g. 2026-01-31T12:00:00)"
            ) from None
    elif hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise MaterializationError(f"{what} must be a datetime or an ISO string, got {value!r}")
    aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    return aware.astimezone(timezone.utc)


def _check_end(end: datetime) -> None:
    now = datetime.now(timezone.utc)
    if end > now + CLOCK_SKEW:
        raise MaterializationError(
            f"end {end.isoformat()} is in the future (now is {now.isoformat(timespec='seconds')}): rows after now "
            "would be recorded as done before they exist; use an end up to now (on the command line, leave "
            "END out: `fs materialize START` and `fs materialize-incremental` run up to now)"
        )


def _select_views(store: FeatureStore, names: Sequence[str] | None) -> tuple[list[FeatureView], int]:
    """The views to materialize, as applied now, and the registry generation they are at least as new
    as (a run whose view an apply reset meanwhile is not recorded: `Registry.record_materialization`)."""
    generation = store.registry.generation()
    store.refresh()  # the definitions as applied now, not as cached up to a second ago
    catalog = store.catalog
    if not names:
        return sorted(catalog.views.values(), key=lambda v: v.name), generation
    out = []
    for name in names:
        if name not in catalog.views:
            raise unknown("feature view", name, catalog.views)
        out.append(catalog.views[name])
    return out, generation


def materialize(
    store: FeatureStore, start: Any, end: Any, views: Sequence[str] | None = None, progress: bool = False
) -> MaterializeResult:
    """Materialize source rows with start <= event time <= end for the views (default: all)."""
    start, end = parse_time(start, "start"), parse_time(end, "end")
    if start > end:
        raise MaterializationError(f"start {start.isoformat()} is after end {end.isoformat()}")
    _check_end(end)
    selected, generation = _select_views(store, views)
    predicate = f"{EVENT_TS} >= {ts_literal(start)} AND {EVENT_TS} <= {ts_literal(end)}"
    online_id, online_marks = _online_state(store, selected)
    jobs = []
    for view in selected:
        online = _OnlineJob(online_id) if view.online and online_id is not None else None
        if online is not None:
            # A range moves the online watermark only where the store holds everything before it:
            # it was in step with offline storage, or already reached `start`.
            mark = online_marks.get(view.name)
            online.advance = mark == store.registry.watermark(view.name) or (
                mark is not None and mark >= start
            )
        jobs.append(_Job(view, start, predicate, online))
    return _run(store, jobs, end, generation, progress)


def materialize_incremental(
    store: FeatureStore, end: Any = None, views: Sequence[str] | None = None, progress: bool = False
) -> MaterializeResult:
    """Materialize each view from its watermark (or the beginning) up to end (default: now).

    With a created timestamp in the source, rows created after the watermark are picked up even
    when their event time is older (late-arriving rows)."""
    end = parse_time(end, "end") if end is not None else datetime.now(timezone.utc)
    _check_end(end)
    jobs = []
    selected, generation = _select_views(store, views)
    online_id, online_marks = _online_state(store, selected)
    for view in selected:
        watermark = store.registry.watermark(view.name)
        start = watermark or EPOCH
        if start > end:
            raise MaterializationError(
                f"view '{view.name}': end {end.isoformat()} is before its watermark {start.isoformat()}"
            )
        predicate = f"{EVENT_TS} >= {ts_literal(start)} AND {EVENT_TS} <= {ts_literal(end)}"
        if watermark is not None and view.source.created_timestamp_field:
            predicate = (
                f"{EVENT_TS} <= {ts_literal(end)} AND ({EVENT_TS} >= {ts_literal(start)} "
                f"OR {CREATED_TS} > {ts_literal(watermark)})"
            )
        online = _OnlineJob(online_id) if view.online and online_id is not None else None
        if online is not None and watermark is not None:
            mark = online_marks.get(view.name)
            if mark is None or mark < watermark:  # a new or emptied store, or one left behind
                online.fill_from = mark or EPOCH
        jobs.append(_Job(view, start, predicate, online))
    return _run(store, jobs, end, generation, progress)


@dataclass
class _OnlineJob:
    """What a run does online: the store's identity, from when it must fill the store from the source
    (None: only the run's own rows), and whether the store's watermark moves with the run."""

    store: str
    fill_from: datetime | None = None
    advance: bool = True


@dataclass
class _Job:
    view: FeatureView
    start: datetime
    predicate: str
    online: _OnlineJob | None


def _online_state(
    store: FeatureStore, views: Sequence[FeatureView]
) -> tuple[str | None, dict[str, datetime]]:
    """The online store's identity (written on its first use) and its online watermarks, when any of
    `views` is served online; else (None, {})."""
    if not any(v.online for v in views):
        return None, {}
    identity = store.online_store.identity(create=True)
    if identity is None:
        raise MaterializationError(
            "the online store did not keep its identity marker: check that it accepts writes"
        )
    return identity, store.registry.online_watermarks(identity)


def _run(
    store: FeatureStore,
    jobs: list[_Job],
    end: datetime,
    generation: int,
    progress: bool,
) -> MaterializeResult:
    result = MaterializeResult()
    bar = _Progress(len(jobs)) if progress else None
    try:
        for job in jobs:
            if bar:
                bar.start_view(job.view.name)
            run = _materialize_view(
                store, job.view, job.start, end, job.predicate, generation, bar, job.online
            )
            result.runs.append(run)
            if bar:
                bar.finish_view(run)
    finally:
        if bar:
            bar.close()
    return result


def _materialize_view(
    store: FeatureStore,
    view: FeatureView,
    start: datetime,
    end: datetime,
    predicate: str,
    generation: int,
    bar: _Progress | None,
    online: _OnlineJob | None = None,
) -> ViewRun:
    if isinstance(view.source, PushSource) and view.source.batch_source is None:
        return ViewRun(
            view.name, start, end, skipped="push source without a batch_source: rows arrive by push"
        )
    began = time.perf_counter()
    # Bounded: materializing any range needs no more than this, DuckDB spills the rest to disk.
    con = duckdb_connection(memory_limit=MEMORY_LIMIT)
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET partitioned_write_flush_threshold = 100000")  # per-day buffers flush early
    reader = SourceReader(con, store.repo_path, store.catalog.sources)
    storage = store.offline_storage
    # Taken before the source is read: a file changed during the run leaves the range stale.
    fingerprint = source_fingerprint(store.repo_path, store.catalog.sources, view.source)
    rows_sql = source_rows_sql(reader, view, where=predicate)
    with storage.locked(view.name):
        try:
            staging = storage.stage(con, view, rows_sql)
        except Exception as e:
            raise MaterializationError(
                f"view '{view.name}': reading source '{view.source.name}' failed: {e}"
            ) from e
        staged = storage.staged_relation(staging)
        has_rows = bool(storage.staged_days(staging))
        rows = arrow_table(con, f"SELECT count(*) FROM {staged}").column(0)[0].as_py() if has_rows else 0
        stats, stats_seconds = None, 0.0
        if rows:  # the run's feature statistics, recorded with it (featurestore.monitoring.stats)
            from .monitoring.stats import run_profile

            stats, stats_seconds = run_profile(con, view, staged)
        keys = ", ".join(quote_ident(k) for k in view.join_keys)
        if bar and rows and view.online:
            bar.set_total(
                arrow_table(con, f"SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {staged})")
                .column(0)[0]
                .as_py()
            )
        online_rows = 0
        fill_from = online.fill_from if online is not None else None
        periods = None
        if view.online and view.is_aggregating and (rows or fill_from is not None):
            # Tiles (online/tile_writer.py): the periods to rebuild now, the tiles once storage holds the run
            from .online.tile_writer import rebuild_periods

            rebuild_from = start if fill_from is None else min(start, fill_from)
            periods = rebuild_periods(con, view, staged if rows else None, rebuild_from, end)
        elif view.online and (rows or fill_from is not None):
            relation = staged
            if fill_from is not None:  # the store lacks earlier rows: fill it from the source
                since = f"{EVENT_TS} >= {ts_literal(fill_from)} AND {EVENT_TS} <= {ts_literal(end)}"
                both = f" UNION ALL BY NAME SELECT * FROM {staged}" if rows else ""
                # Rows pushed to offline storage are the view's rows too: a refilled store holds
                # them, or a pushed row newer than the source would read as the source's older one.
                storage.attach(con)
                pushed_sql = storage.rows_sql(view, PUSHED)
                if pushed_sql is not None:
                    both += f" UNION ALL BY NAME SELECT * FROM ({pushed_sql}) WHERE {since}"
                con.execute(
                    f"CREATE OR REPLACE TEMP VIEW __fs_online_rows AS {source_rows_sql(reader, view, where=since)}{both}"
                )
                relation = "__fs_online_rows"
            if store.config.offline.engine == "spark":  # chosen and written by the executors
                online_rows = _write_online_on_spark(store, con, view, relation)
                if bar:
                    bar.advance(online_rows)
            else:
                latest = arrow_batches(con, latest_rows_sql(view, relation))
                online_rows = store.online_store.write(view, _counting(latest, bar))
        storage.commit(
            con, view, staging, predicate, days=days_between(start, end), rebuild=_whole_day(reader, view)
        )
        if periods is not None:
            from .offline.retrieval import feature_rows_sql
            from .online.tile_writer import write_tiles

            # The events a training set reads (storage where materialized, the source elsewhere, rows
            # pushed offline), so the tiles of a range widened past stored days hold what it aggregates.
            events, _ = feature_rows_sql(store, reader, view)
            online_rows = write_tiles(
                store.online_store, con, view, events, periods, bar.advance if bar else None
            )
    if not store.registry.record_materialization(
        view.name,
        start,
        end,
        rows,
        online_rows,
        advance_watermark=True,
        generation=generation,
        online_store=online.store if online is not None and online.advance else None,
        source_fingerprint=fingerprint,
        stats=stats,
    ):
        return ViewRun(
            view.name,
            start,
            end,
            rows,
            online_rows,
            time.perf_counter() - began,
            skipped="not recorded: an apply changed the view during the run; run again",
            recorded=False,
            stats_seconds=stats_seconds,
        )
    return ViewRun(
        view.name, start, end, rows, online_rows, time.perf_counter() - began, stats_seconds=stats_seconds
    )


def _write_online_on_spark(store: FeatureStore, con: Any, view: FeatureView, relation: str) -> int:
    """The latest row per entity of `relation`, written online from Spark's executors
    (`featurestore.offline.spark_online`); returns the entity rows written."""
    from .offline.spark import staging_root
    from .offline.spark_online import write_latest_online
    from .offline.spark_session import spark_session

    spark = spark_session(store.config.offline.spark_master)
    return write_latest_online(
        spark, store.config, con, view, relation, staging_root(store.config.offline_path)
    )


def _whole_day(reader: SourceReader, view: FeatureView) -> Callable[[date], str]:
    """For offline storage: the SELECT of all of a day's source rows, to rebuild a day whose stored
    file cannot be read (the run's own range may cover only part of that day)."""

    def rows(day: date) -> str:
        first = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        where = f"{EVENT_TS} >= {ts_literal(first)} AND {EVENT_TS} < {ts_literal(first + timedelta(days=1))}"
        return source_rows_sql(reader, view, where=where)

    return rows


def latest_rows_sql(view: FeatureView, rows: str) -> str:
    """The newest row per entity of `rows`: the same choice as the point-in-time join (newest event,
    newest created, then feature values). Rows with a null key are left out (they match nothing).

    The newest event time per entity is a hash aggregate; only rows at that time (ties are rare)
    go through the window that breaks ties: about 4x faster than a window over every row."""
    keys = [quote_ident(k) for k in view.join_keys]
    cols = ", ".join(f"r.{quote_ident(c)}" for c in (*view.join_keys, *view.feature_names, EVENT_TS))
    order = latest_first("r", view.feature_names)
    on = " AND ".join([*(f"r.{k} = m.{k}" for k in keys), f"r.{EVENT_TS} = m.__newest"])
    return (
        f"WITH m AS (SELECT {', '.join(keys)}, max({EVENT_TS}) AS __newest FROM {rows} GROUP BY ALL) "
        f"SELECT {cols} FROM {rows} AS r JOIN m ON {on} "
        f"QUALIFY row_number() OVER (PARTITION BY {', '.join(f'r.{k}' for k in keys)} ORDER BY {order}) = 1"
    )


def _counting(reader: Any, bar: _Progress | None) -> Any:
    for batch in reader:
        if bar:
            bar.advance(batch.num_rows)
        yield batch


class _Progress:
    """A rich progress bar: one line for views, one for the current view's rows (with rows/s)."""

    def __init__(self, views: int):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        class RowsPerSecond(TransferSpeedColumn):
            def render(self, task: Any) -> Any:
                from rich.text import Text

                speed = task.finished_speed or task.speed
                return Text(f"{speed:,.0f} rows/s" if speed else "", style="progress.data.speed")

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RowsPerSecond(),
            TimeElapsedColumn(),
            transient=False,
        )
        self.progress.start()
        self.views = self.progress.add_task("views", total=views)
        self.rows: Any = None

    def start_view(self, name: str) -> None:
        self.rows = self.progress.add_task(f"  {name}", total=None)

    def set_total(self, rows: int) -> None:
        self.progress.update(self.rows, total=rows)

    def advance(self, n: int) -> None:
        self.progress.advance(self.rows, n)

    def finish_view(self, run: ViewRun) -> None:
        done = run.online_rows or 1
        self.progress.update(self.rows, total=done, completed=done)
        self.progress.advance(self.views, 1)

    def close(self) -> None:
        self.progress.stop()
