"""The PostgreSQL registry backend: a registry a team shares, in one PostgreSQL database (`RegistryStore`).

    [registry]
    url = "postgresql://featurestore@db.internal/features"   # or FS_REGISTRY_URL

The tables are those of the SQLite backend (`featurestore.registry_sqlite`), with the same numbered
migrations (`MIGRATIONS`, recorded in `schema_migrations`, each in its own transaction; a newer schema
is refused), created in the connection's current schema (the database's default, or the one a URL's
`options=-csearch_path=NAME` names). Values are kept as the SQLite backend keeps them: JSON and times
as text, so both backends return the same values and a registry copies between them row for row
(`export_rows` / `import_rows`, used by `fs registry migrate` and `backup`).

Every write transaction begins with `pg_advisory_xact_lock` on one key per registry, so writers on
every machine are serialized as SQLite's `BEGIN IMMEDIATE` serializes them on one: a read-then-write
inside a transaction (a next version number, a watermark that only moves forward) cannot race, and
ids (materialization runs, audit entries) are handed out in commit order. Reads are single
statements outside any transaction. Each thread (and each forked process) has its own connection.

`exclusive_lock(name)` is a session-level advisory lock held on a connection opened for it alone,
so a process that dies, however it dies, drops the connection and with it the lock (`AdvisoryLock`:
kept from idle timeouts, and able to tell its holder it was lost). Every connection asks for TCP
keepalives, and a write waits at most `busy_timeout` for another writer (then "busy", as SQLite).

psycopg is imported here only (this module is imported when a registry url is set), so `import featurestore` does not need it (`featurestore[postgres]`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import redacted_text, redacted_url
from .errors import RegistryError
from .registry_store import (
    MODEL_JSON_FIELDS,
    MODEL_VERSION_FIELDS,
    REGISTRY_TABLES,
    RUN_COLUMNS,
    AliasMove,
    Change,
    MaterializationRun,
    RegistryStore,
    RunCommit,
    TableRows,
    unreadable_error,
)

try:
    import psycopg
    from psycopg.types.string import StrDumperUnknown
except ImportError as e:  # the extra is not installed
    raise RegistryError("a PostgreSQL registry needs psycopg 3: pip install 'featurestore[postgres]'") from e


# The connections this module opened, for `_RollbackNoise`.
_OURS: weakref.WeakSet[Any] = weakref.WeakSet()


class _RollbackNoise(logging.Filter):
    """Drops psycopg's "error ignored in rollback" warning for this module's connections: when a
    transaction ends with an error after the server dropped its connection, the rollback fails too,
    and the error that ended it (raised to the caller; the next call opens a new connection) says
    all there is to say. Other users' connections keep the warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("error ignored in rollback"):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        subject = args[0] if args else None  # a psycopg Transaction, or the Connection itself
        con = getattr(subject, "connection", subject)
        try:
            return con not in _OURS
        except TypeError:  # not weakly referenceable: not ours
            return True


for _logger in ("psycopg", "psycopg.transaction"):  # the connection's and the transaction's loggers
    logging.getLogger(_logger).addFilter(_RollbackNoise())


class _NulInText(ValueError):
    """A text value holding NUL, which PostgreSQL text cannot store: bad input, not a corrupt registry."""

    def __init__(self, value: str):
        super().__init__(value)
        self.value = value


class _TextDumper(StrDumperUnknown):
    """psycopg's own text parameter dumper, refusing NUL with the value at fault (psycopg's message
    does not say which parameter held it)."""

    def dump(self, obj: str) -> Any:
        if "\x00" in obj:
            raise _NulInText(obj)
        return super().dump(obj)


# The same versions and names as the SQLite backend's MIGRATIONS; the statements in PostgreSQL's
# words. Integers are BIGINT (SQLite's INTEGER is 64-bit). Tables SQLite orders by rowid get an `id`
# of their own. Names that are listed sorted are `COLLATE "C"`, so they sort by code point as in
# SQLite, whatever the database's locale. Never edit a migration that has shipped: append one.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "initial tables",
        (
            """CREATE TABLE objects (
            kind TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL, version BIGINT NOT NULL,
            spec TEXT NOT NULL, applied_by TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (kind, name))""",
            """CREATE TABLE object_history (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL,
            version BIGINT NOT NULL, action TEXT NOT NULL, spec TEXT, applied_by TEXT NOT NULL,
            applied_at TEXT NOT NULL)""",
            """CREATE TABLE watermarks (
            view TEXT PRIMARY KEY, watermark TEXT NOT NULL, updated_at TEXT NOT NULL)""",
            """CREATE TABLE materializations (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, view TEXT NOT NULL, start TEXT NOT NULL,
            "end" TEXT NOT NULL, rows BIGINT NOT NULL, online_rows BIGINT NOT NULL, finished_at TEXT NOT NULL)""",
            "CREATE INDEX materializations_by_view ON materializations (view, id)",
            """CREATE TABLE view_resets (
            view TEXT PRIMARY KEY, at TEXT NOT NULL, generation BIGINT NOT NULL, last_run BIGINT NOT NULL)""",
            """CREATE TABLE audit (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,
            action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL)""",
            "CREATE INDEX audit_by_action ON audit (action, id)",
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            """CREATE TABLE model_versions (
            name TEXT COLLATE "C" NOT NULL, version BIGINT NOT NULL, flavor TEXT NOT NULL, format TEXT NOT NULL,
            artifact TEXT NOT NULL, sha256 TEXT NOT NULL, size BIGINT NOT NULL, details TEXT NOT NULL,
            feature_service TEXT NOT NULL, signature TEXT NOT NULL, training_set TEXT, training_fingerprint TEXT,
            metrics TEXT NOT NULL, params TEXT NOT NULL, tags TEXT NOT NULL, description TEXT NOT NULL,
            missing_policy TEXT NOT NULL, registered_by TEXT NOT NULL, registered_at TEXT NOT NULL,
            PRIMARY KEY (name, version))""",
            """CREATE TABLE model_aliases (
            name TEXT NOT NULL, alias TEXT NOT NULL, version BIGINT NOT NULL, set_by TEXT NOT NULL,
            set_at TEXT NOT NULL, PRIMARY KEY (name, alias))""",
            """CREATE TABLE model_alias_history (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name TEXT NOT NULL, alias TEXT NOT NULL,
            old_version BIGINT, new_version BIGINT, actor TEXT NOT NULL, at TEXT NOT NULL)""",
            """CREATE TABLE training_sets (
            name TEXT COLLATE "C" PRIMARY KEY, fingerprint TEXT NOT NULL, record TEXT NOT NULL,
            description TEXT NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL)""",
        ),
    ),
    (2, "where each definition is defined", ("ALTER TABLE objects ADD COLUMN location TEXT",)),
    (
        3,
        "online watermarks per online store",
        (
            """CREATE TABLE online_watermarks (
            view TEXT NOT NULL, store TEXT NOT NULL, watermark TEXT NOT NULL, updated_at TEXT NOT NULL,
            PRIMARY KEY (view, store))""",
        ),
    ),
    (
        4,
        "the source fingerprint of each materialization run",
        ("ALTER TABLE materializations ADD COLUMN source_fingerprint TEXT",),
    ),
    (
        5,
        "feature statistics per run, and cached monitoring profiles",
        (
            "ALTER TABLE materializations ADD COLUMN stats TEXT",
            """CREATE TABLE monitor_profiles (
            key TEXT PRIMARY KEY, body TEXT NOT NULL, updated_at TEXT NOT NULL)""",
        ),
    ),
    (
        6,
        "training pipeline runs",
        (
            """CREATE TABLE pipeline_runs (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, model TEXT NOT NULL, status TEXT NOT NULL,
            decision TEXT, step TEXT NOT NULL, started_at TEXT NOT NULL, updated_at TEXT NOT NULL,
            record TEXT NOT NULL)""",
            "CREATE INDEX pipeline_runs_by_model ON pipeline_runs (model, id)",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

# Advisory lock keys: a 64-bit hash of a text naming the registry's schema, so two registries in two
# schemas of one database do not wait for each other (advisory locks are per database already).
_KEY = "hashtextextended(%s || COALESCE(current_schema(), ''), 0)"
_LOCK_WRITES = f"SELECT pg_advisory_xact_lock({_KEY})"
_WRITES_KEY = "featurestore registry writes:"
_NAMED_KEY = "featurestore lock {name}:"

_COLUMNS = ", ".join(MODEL_VERSION_FIELDS)
_RUN_SELECT = 'SELECT view, start, "end", rows, online_rows, finished_at, source_fingerprint, stats'
_CURRENT_RUNS = (
    "FROM materializations WHERE view = %s AND id > "
    "COALESCE((SELECT last_run FROM view_resets WHERE view_resets.view = materializations.view), 0)"
)
_ALIAS_UPSERT = (
    "INSERT INTO model_aliases VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name, alias) DO UPDATE SET "
    "version = excluded.version, set_by = excluded.set_by, set_at = excluded.set_at"
)
_PIPELINE_SELECT = f"SELECT {', '.join(RUN_COLUMNS)}, record FROM pipeline_runs"
_RUN_FIELDS = ("status", "decision", "step")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class PostgresRegistryStore(RegistryStore):
    """A registry in the PostgreSQL database at `url` (its tables created on first open).

    >>> store = PostgresRegistryStore("postgresql://postgres@127.0.0.1:5432/features")  # doctest: +SKIP
    """

    def __init__(self, url: str, connect_timeout: int = 5, busy_timeout: float = 30.0):
        self.url = url
        self.location = redacted_url(url)
        self.connect_timeout = connect_timeout
        # How long a write waits for another writer before "busy" (SQLite's busy timeout: 30 s).
        self.busy_timeout = busy_timeout
        self._options = _connection_options(url, connect_timeout)
        self._local = threading.local()
        self._migrate()

    # -- connections, transactions and errors ----------------------------------------------------

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        """A new autocommit connection, or a RegistryError saying what to check."""
        try:
            con = psycopg.connect(self.url, **self._options)
            con.adapters.register_dumper(str, _TextDumper)
            _OURS.add(con)
            return con
        except psycopg.Error as e:
            raise RegistryError(
                f"cannot connect to the registry {self.location}: {self._why(e)}; check that PostgreSQL "
                "runs at that host and port, that the database exists and that the user may log in "
                "([registry] url or FS_REGISTRY_URL)"
            ) from None

    def _con(self) -> psycopg.Connection[tuple[Any, ...]]:
        con: psycopg.Connection[tuple[Any, ...]] | None = getattr(self._local, "con", None)
        # A forked child must not talk on its parent's socket: it opens its own connection.
        if con is None or con.closed or con.broken or getattr(self._local, "pid", None) != os.getpid():
            con = self._connect()
            self._local.con, self._local.pid = con, os.getpid()
        return con

    def _why(self, e: BaseException) -> str:
        """A driver error's first line, with the URL's passwords masked (libpq quotes a host it
        could not resolve, which for a password holding an unencoded '@' is part of the password)."""
        return redacted_text(_first_line(e), self.url)

    def unreadable(self, problem: str) -> RegistryError:
        """The error for a registry database whose contents cannot be read as a registry."""
        return unreadable_error(self.location, problem)

    def _translate(self, e: Exception) -> RegistryError:
        """A psycopg error as a RegistryError naming the registry (and what to do)."""
        con = getattr(self._local, "con", None)
        if con is not None and (con.closed or con.broken):
            self._local.con = None  # the next call connects again
            return RegistryError(
                f"lost the connection to the registry {self.location}: {self._why(e)}; check that "
                "PostgreSQL is running and reachable, then try again"
            )
        if isinstance(e, psycopg.errors.LockNotAvailable):  # lock_timeout: a writer holds on
            return RegistryError(
                f"the registry {self.location} is busy: another process has held its write lock for "
                f"{self.busy_timeout:g} s (a stopped or stuck writer?); try again, or find the session in "
                "pg_stat_activity"
            )
        if isinstance(e, psycopg.OperationalError):  # a canceled statement, a full disk, ...
            return RegistryError(
                f"the registry {self.location} could not complete an operation: {self._why(e)}; check "
                "the PostgreSQL server, then try again"
            )
        if isinstance(e, (psycopg.DataError, psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn)):
            return self.unreadable(self._why(e))
        return RegistryError(f"the registry {self.location} refused an operation: {self._why(e)}")

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """One write transaction, serialized with every other writer of this registry."""
        try:
            with ExitStack() as stack:
                con = self._begin(stack)
                # Bounded, as SQLite's busy timeout is: a stuck writer makes others fail, not hang.
                con.execute(
                    "SELECT set_config('lock_timeout', %s, true)", (f"{int(self.busy_timeout * 1000)}ms",)
                )
                con.execute(_LOCK_WRITES, (_WRITES_KEY,))
                yield con
        except psycopg.Error as e:
            raise self._translate(e) from None
        except _NulInText as e:
            raise self._refused(e) from None

    def _refused(self, e: _NulInText) -> RegistryError:
        return RegistryError(
            f"the registry {self.location} refused the value {e.value[:80]!r}: PostgreSQL text cannot hold "
            "the NUL character (\\x00); remove it"
        )

    def _begin(self, stack: ExitStack) -> psycopg.Connection[tuple[Any, ...]]:
        """This thread's connection, in a transaction `stack` ends. A connection the server dropped
        while it sat idle (a timeout, a restart) fails its BEGIN, before anything of the caller's
        is sent: it is opened anew, once."""
        con = self._con()
        try:
            stack.enter_context(con.transaction())
        except psycopg.OperationalError:
            if not con.broken:
                raise
            con = self._con()  # a new connection (this one is broken)
            stack.enter_context(con.transaction())
        return con

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            con = self._con()
            try:
                return con.execute(sql, params).fetchall()
            except psycopg.OperationalError:
                if not con.broken:
                    raise
                # Dropped while idle: a read is asked again, once, on a new connection.
                return self._con().execute(sql, params).fetchall()
        except psycopg.Error as e:
            raise self._translate(e) from None
        except _NulInText as e:
            raise self._refused(e) from None

    def _time(self, text: Any, what: str) -> datetime:
        try:
            return datetime.fromisoformat(text)
        except (TypeError, ValueError):
            raise self.unreadable(f"{what} holds {text!r}, not a time") from None

    def _json(self, text: Any, what: str) -> Any:
        try:
            return json.loads(text)
        except (TypeError, ValueError):
            raise self.unreadable(f"{what} holds {str(text)[:40]!r}, not JSON") from None

    def _int(self, value: Any, what: str) -> int:
        if isinstance(value, int):
            return value
        try:
            return int(value)
        except (TypeError, ValueError):
            raise self.unreadable(f"{what} holds {str(value)[:40]!r}, not a number") from None

    # -- lifecycle ---------------------------------------------------------------------------------

    def _migrate(self) -> None:
        if self._read("SELECT to_regclass('schema_migrations') IS NOT NULL")[0][0]:
            current = self.schema_version()
            if current == SCHEMA_VERSION:
                return  # the common case: one round trip more than none
        with self._transaction() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise RegistryError(
                f"the registry {self.location} has schema version {current}, newer than this featurestore "
                f"knows ({SCHEMA_VERSION}): upgrade featurestore to use it"
            )
        for version, name, statements in MIGRATIONS:
            if version <= current:
                continue
            with self._transaction() as con:
                # Another process may have applied it since we looked (it held the lock we now hold).
                if con.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,)).fetchone():
                    continue
                for statement in statements:
                    con.execute(statement)
                con.execute("INSERT INTO schema_migrations VALUES (%s, %s, %s)", (version, name, _now()))

    def schema_version(self) -> int:
        row = self._read("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        return self._int(row[0][0], "schema_migrations")

    def close(self) -> None:
        con: psycopg.Connection[tuple[Any, ...]] | None = getattr(self._local, "con", None)
        if con is not None:
            self._local.con = None
            if getattr(self._local, "pid", None) == os.getpid():
                con.close()

    def exclusive_lock(self, name: str, wait: bool = True) -> AdvisoryLock:
        return AdvisoryLock(self, name, wait)

    def backup(self, destination: Path) -> None:
        """A SQLite registry file at `destination` with every row of this one, from one snapshot (the
        same portable file `fs registry backup` writes for a SQLite registry; `fs registry migrate`
        copies it back). For a backup of the database itself, use pg_dump (docs/deploy.md)."""
        from .registry_sqlite import SQLiteRegistryStore

        copy = SQLiteRegistryStore(destination)
        try:
            copy.import_rows(self.export_rows())
        finally:
            copy.close()

    # -- copying between backends ------------------------------------------------------------------

    def export_rows(self) -> TableRows:
        try:
            with ExitStack() as stack:
                con = self._begin(stack)
                # One snapshot of every table, taken without waiting for (or holding up) writers.
                con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                out: TableRows = {}
                for table, columns in REGISTRY_TABLES.items():
                    order = " ORDER BY id" if columns[0] == "id" else ""
                    names = ", ".join(f'"{c}"' for c in columns)
                    out[table] = con.execute(f"SELECT {names} FROM {table}{order}").fetchall()
                return out
        except psycopg.Error as e:
            raise self._translate(e) from None

    def import_rows(self, rows: TableRows) -> None:
        with self._transaction() as con:
            for table in REGISTRY_TABLES:
                if con.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
                    raise RegistryError(
                        f"the registry {self.location} is not empty (table {table} has rows): copy into "
                        "a new, empty database"
                    )
            for table, columns in REGISTRY_TABLES.items():
                body = rows.get(table, [])
                if not body:
                    continue
                names = ", ".join(f'"{c}"' for c in columns)
                marks = ", ".join(["%s"] * len(columns))
                with con.cursor() as cur:
                    cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", body)
                if columns[0] == "id":  # the next id continues after the copied ones
                    con.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
                    )

    # -- applied definitions -----------------------------------------------------------------------

    def specs(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (k, n): self._json(s, f"the spec of {k} '{n}'")
            for k, n, s in self._read("SELECT kind, name, spec FROM objects")
        }

    def objects(self) -> list[dict[str, Any]]:
        rows = self._read(
            "SELECT kind, name, version, spec, applied_by, applied_at, location FROM objects ORDER BY kind, name"
        )
        return [
            {
                "kind": k,
                "name": n,
                "version": v,
                "spec": self._json(s, f"the spec of {k} '{n}'"),
                "applied_by": b,
                "applied_at": a,
                "location": loc,
            }
            for k, n, v, s, b, a, loc in rows
        ]

    def versions(self) -> dict[tuple[str, str], int]:
        return {(k, n): v for k, n, v in self._read("SELECT kind, name, version FROM objects")}

    def generation(self) -> int:
        return self._meta_int("generation")

    def _meta_int(self, key: str) -> int:
        row = self._read("SELECT value FROM meta WHERE key = %s", (key,))
        return self._int(row[0][0], f"meta '{key}'") if row else 0

    def _bump(self, con: psycopg.Connection[tuple[Any, ...]], key: str) -> int:
        row = con.execute(
            "INSERT INTO meta VALUES (%s, '1') ON CONFLICT (key) DO UPDATE SET "
            "value = (CAST(meta.value AS BIGINT) + 1)::text RETURNING value",
            (key,),
        ).fetchone()
        return self._int(row[0] if row else None, f"meta '{key}'")

    def apply(
        self,
        changes: Sequence[Change],
        actor: str,
        stale_views: Sequence[str] = (),
        locations: Mapping[tuple[str, str], str] | None = None,
    ) -> int:
        now = _now()
        with self._transaction() as con:
            for action, kind, name, spec in changes:
                row = con.execute(
                    "SELECT version FROM objects WHERE kind = %s AND name = %s", (kind, name)
                ).fetchone()
                version = (row[0] if row else 0) + (0 if action == "remove" else 1)
                if action == "remove":
                    con.execute("DELETE FROM objects WHERE kind = %s AND name = %s", (kind, name))
                    text = None
                else:
                    text = json.dumps(spec, sort_keys=True)
                    con.execute(
                        "INSERT INTO objects (kind, name, version, spec, applied_by, applied_at) "
                        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (kind, name) DO UPDATE SET "
                        "version = excluded.version, spec = excluded.spec, applied_by = excluded.applied_by, "
                        "applied_at = excluded.applied_at",
                        (kind, name, version, text, actor, now),
                    )
                con.execute(
                    "INSERT INTO object_history (kind, name, version, action, spec, applied_by, applied_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (kind, name, version, action, text, actor, now),
                )
            for (kind, name), where in (locations or {}).items():
                con.execute(
                    "UPDATE objects SET location = %s WHERE kind = %s AND name = %s", (where, kind, name)
                )
            if changes:
                generation = self._bump(con, "generation")
                self._audit(con, actor, "apply", "definitions", {"changes": len(changes)})
                # The runs recorded so far, by id (commit order: writers hold the write lock): they
                # stop counting.
                found = con.execute("SELECT COALESCE(MAX(id), 0) FROM materializations").fetchone()
                last_run = found[0] if found else 0
                for view in stale_views:
                    con.execute("DELETE FROM watermarks WHERE view = %s", (view,))
                    con.execute("DELETE FROM online_watermarks WHERE view = %s", (view,))
                    con.execute(
                        "INSERT INTO view_resets VALUES (%s, %s, %s, %s) ON CONFLICT (view) DO UPDATE SET "
                        "at = excluded.at, generation = excluded.generation, last_run = excluded.last_run",
                        (view, now, generation, last_run),
                    )
            else:
                row = con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
                generation = self._int(row[0], "meta 'generation'") if row else 0
        return generation

    # -- watermarks and materialization runs -------------------------------------------------------

    def watermark(self, view: str) -> datetime | None:
        row = self._read("SELECT watermark FROM watermarks WHERE view = %s", (view,))
        return self._time(row[0][0], f"the watermark of view '{view}'") if row else None

    def watermarks(self) -> dict[str, datetime]:
        return {
            v: self._time(w, f"the watermark of view '{v}'")
            for v, w in self._read("SELECT view, watermark FROM watermarks")
        }

    def record_materialization(
        self,
        run: MaterializationRun,
        advance_watermark: bool,
        generation: int | None = None,
        online_store: str | None = None,
    ) -> bool:
        now = _now()
        with self._transaction() as con:
            if generation is not None:
                reset = con.execute(
                    "SELECT generation FROM view_resets WHERE view = %s", (run.view,)
                ).fetchone()
                if reset is not None and reset[0] > generation:
                    return False
            con.execute(
                'INSERT INTO materializations (view, start, "end", rows, online_rows, finished_at, '
                "source_fingerprint, stats) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    run.view,
                    _iso(run.start),
                    _iso(run.end),
                    run.rows,
                    run.online_rows,
                    _iso(run.finished_at),
                    run.source_fingerprint,
                    None if run.stats is None else json.dumps(run.stats, sort_keys=True),
                ),
            )
            if advance_watermark:
                row = con.execute("SELECT watermark FROM watermarks WHERE view = %s", (run.view,)).fetchone()
                if row is None or self._time(row[0], f"the watermark of view '{run.view}'") < run.end:
                    con.execute(
                        "INSERT INTO watermarks VALUES (%s, %s, %s) ON CONFLICT (view) DO UPDATE SET "
                        "watermark = excluded.watermark, updated_at = excluded.updated_at",
                        (run.view, _iso(run.end), now),
                    )
            if online_store is not None:
                row = con.execute(
                    "SELECT watermark FROM online_watermarks WHERE view = %s AND store = %s",
                    (run.view, online_store),
                ).fetchone()
                if row is None or self._time(row[0], f"the online watermark of view '{run.view}'") < run.end:
                    con.execute(
                        "INSERT INTO online_watermarks VALUES (%s, %s, %s, %s) ON CONFLICT (view, store) "
                        "DO UPDATE SET watermark = excluded.watermark, updated_at = excluded.updated_at",
                        (run.view, online_store, _iso(run.end), now),
                    )
        return True

    def online_watermarks(self, online_store: str) -> dict[str, datetime]:
        return {
            v: self._time(w, f"the online watermark of view '{v}'")
            for v, w in self._read(
                "SELECT view, watermark FROM online_watermarks WHERE store = %s", (online_store,)
            )
        }

    def tracks_online_stores(self) -> bool:
        return bool(self._read("SELECT 1 FROM online_watermarks LIMIT 1"))

    def _runs(self, rows: list[tuple[Any, ...]]) -> list[MaterializationRun]:
        return [
            MaterializationRun(
                view=v,
                start=self._time(a, f"a run of view '{v}'"),
                end=self._time(b, f"a run of view '{v}'"),
                rows=self._int(r, f"a run of view '{v}'"),
                online_rows=self._int(o, f"a run of view '{v}'"),
                finished_at=self._time(f, f"a run of view '{v}'"),
                source_fingerprint=fp if isinstance(fp, str) else None,
                stats=self._json(st, f"the statistics of a run of view '{v}'")
                if isinstance(st, str)
                else None,
            )
            for v, a, b, r, o, f, fp, st in rows
        ]

    def current_runs(self, view: str) -> list[MaterializationRun]:
        return self._runs(self._read(f"{_RUN_SELECT} {_CURRENT_RUNS} ORDER BY id", (view,)))

    def runs(self, view: str | None = None, limit: int | None = None) -> list[MaterializationRun]:
        sql = f"{_RUN_SELECT} FROM materializations"
        where: str
        params: tuple[Any, ...]
        where, params = ("", ()) if view is None else (" WHERE view = %s", (view,))
        if limit is None:
            return self._runs(self._read(sql + where + " ORDER BY id", params))
        newest = self._read(sql + where + " ORDER BY id DESC LIMIT %s", (*params, limit))
        return self._runs(list(reversed(newest)))

    # -- audit trail -------------------------------------------------------------------------------

    def audit(self, actor: str, action: str, target: str, detail: Mapping[str, Any]) -> None:
        with self._transaction() as con:
            self._audit(con, actor, action, target, detail)

    @staticmethod
    def _audit(
        con: psycopg.Connection[tuple[Any, ...]],
        actor: str,
        action: str,
        target: str,
        detail: Mapping[str, Any],
    ) -> None:
        con.execute(
            "INSERT INTO audit (at, actor, action, target, detail) VALUES (%s, %s, %s, %s, %s)",
            (_now(), actor, action, target, _dumps(dict(detail))),
        )

    def audit_log(self, action: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        sql = "SELECT at, actor, action, target, detail FROM audit"
        params: tuple[Any, ...] = ()
        if action:
            sql += " WHERE action = %s"
            params = (action,)
        rows = self._read(sql + " ORDER BY id DESC LIMIT %s", (*params, limit))
        return [
            {"at": a, "actor": b, "action": c, "target": d, "detail": self._json(e, "an audit entry")}
            for a, b, c, d, e in rows
        ]

    # -- models ------------------------------------------------------------------------------------

    def models_generation(self) -> int:
        return self._meta_int("models_generation")

    def add_model_version(self, name: str, build: Callable[[int], dict[str, Any]]) -> int:
        with self._transaction() as con:
            row = con.execute("SELECT MAX(version) FROM model_versions WHERE name = %s", (name,)).fetchone()
            version = ((row[0] if row else None) or 0) + 1
            record = {**build(version), "name": name, "version": version}
            values = [
                _dumps(record[f]) if f in MODEL_JSON_FIELDS else record[f] for f in MODEL_VERSION_FIELDS
            ]
            con.execute(
                f"INSERT INTO model_versions ({_COLUMNS}) VALUES ({', '.join(['%s'] * len(values))})", values
            )
            self._bump(con, "models_generation")
        return version

    def _model_row(self, row: tuple[Any, ...]) -> dict[str, Any]:
        record = dict(zip(MODEL_VERSION_FIELDS, row, strict=True))
        what = f"model '{record['name']}' version {record['version']}"
        for f in MODEL_JSON_FIELDS:
            record[f] = self._json(record[f], f"{what} ({f})")
        return record

    def model_versions(self, name: str | None = None) -> list[dict[str, Any]]:
        sql = f"SELECT {_COLUMNS} FROM model_versions"
        if name is None:
            rows = self._read(sql + " ORDER BY name, version")
        else:
            rows = self._read(sql + " WHERE name = %s ORDER BY version", (name,))
        return [self._model_row(r) for r in rows]

    def model_version(self, name: str, version: int) -> dict[str, Any] | None:
        rows = self._read(
            f"SELECT {_COLUMNS} FROM model_versions WHERE name = %s AND version = %s", (name, version)
        )
        return self._model_row(rows[0]) if rows else None

    def model_aliases(self, name: str | None = None) -> dict[tuple[str, str], int]:
        sql = "SELECT name, alias, version FROM model_aliases"
        params: tuple[str, ...] = ()
        if name is not None:
            sql, params = sql + " WHERE name = %s", (name,)
        return {(n, a): v for n, a, v in self._read(sql, params)}

    def _alias_now(self, con: psycopg.Connection[tuple[Any, ...]], name: str, alias: str) -> int | None:
        row = con.execute(
            "SELECT version FROM model_aliases WHERE name = %s AND alias = %s", (name, alias)
        ).fetchone()
        return int(row[0]) if row else None

    def set_model_alias(self, name: str, alias: str, version: int, actor: str) -> int | None:
        now = _now()
        with self._transaction() as con:
            old = self._alias_now(con, name, alias)
            con.execute(_ALIAS_UPSERT, (name, alias, version, actor, now))
            self._alias_moved(con, name, alias, old, version, actor, now)
        return old

    def delete_model_alias(self, name: str, alias: str, actor: str) -> int | None:
        with self._transaction() as con:
            old = self._alias_now(con, name, alias)
            if old is None:
                return None
            con.execute("DELETE FROM model_aliases WHERE name = %s AND alias = %s", (name, alias))
            self._alias_moved(con, name, alias, old, None, actor, _now())
        return old

    def _alias_moved(
        self,
        con: psycopg.Connection[tuple[Any, ...]],
        name: str,
        alias: str,
        old: int | None,
        new: int | None,
        actor: str,
        at: str,
    ) -> None:
        con.execute(
            "INSERT INTO model_alias_history (name, alias, old_version, new_version, actor, at) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (name, alias, old, new, actor, at),
        )
        self._bump(con, "models_generation")

    def model_alias_history(self, name: str) -> list[dict[str, Any]]:
        rows = self._read(
            "SELECT alias, old_version, new_version, actor, at FROM model_alias_history WHERE name = %s "
            "ORDER BY id",
            (name,),
        )
        return [
            {"alias": a, "old_version": old, "new_version": new, "actor": actor, "at": at}
            for a, old, new, actor, at in rows
        ]

    # -- saved training sets -----------------------------------------------------------------------

    def training_set(self, name: str) -> dict[str, Any] | None:
        rows = self._read(
            "SELECT name, fingerprint, record, description, created_by, created_at FROM training_sets "
            "WHERE name = %s",
            (name,),
        )
        if not rows:
            return None
        n, fp, record, description, by, at = rows[0]
        return {
            "name": n,
            "fingerprint": fp,
            "record": self._json(record, f"training set '{n}'"),
            "description": description,
            "created_by": by,
            "created_at": at,
        }

    def training_set_names(self) -> list[str]:
        return [r[0] for r in self._read("SELECT name FROM training_sets ORDER BY name")]

    def save_training_set(self, entry: Mapping[str, Any], before_commit: Callable[[], None]) -> None:
        with self._transaction() as con:
            before_commit()
            con.execute(
                "INSERT INTO training_sets VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                "fingerprint = excluded.fingerprint, record = excluded.record, "
                "description = excluded.description, created_by = excluded.created_by, "
                "created_at = excluded.created_at",
                (
                    entry["name"],
                    entry["fingerprint"],
                    json.dumps(entry["record"], sort_keys=True),
                    entry["description"],
                    entry["created_by"],
                    entry["created_at"],
                ),
            )

    # -- pipeline runs -----------------------------------------------------------------------------

    def _run_row(self, row: tuple[Any, ...]) -> dict[str, Any]:
        run = dict(zip(RUN_COLUMNS, row[:-1], strict=True))
        record = self._json(row[-1], f"pipeline run {run['id']}")
        if not isinstance(record, dict):
            raise self.unreadable(f"pipeline run {run['id']} holds {str(row[-1])[:40]!r}, not a JSON object")
        return {**record, **run}

    @staticmethod
    def _run_record(values: Mapping[str, Any], what: str) -> dict[str, Any]:
        clash = [k for k in values if k in RUN_COLUMNS and k not in _RUN_FIELDS]
        if clash:
            raise RegistryError(f"{what}: {clash} are kept by the registry itself, not in a run's record")
        record: dict[str, Any] = json.loads(_dumps(dict(values)))
        return record

    def _pipeline_row(self, con: psycopg.Connection[tuple[Any, ...]], run_id: int) -> tuple[Any, ...] | None:
        return con.execute(f"{_PIPELINE_SELECT} WHERE id = %s", (run_id,)).fetchone()

    def add_pipeline_run(self, model: str, record: Mapping[str, Any], actor: str) -> dict[str, Any]:
        now = _now()
        body = self._run_record(record, f"a run of model '{model}'")
        status = body.pop("status", "running")
        decision = body.pop("decision", None)
        step = body.pop("step", "started")
        with self._transaction() as con:
            found = con.execute(
                "INSERT INTO pipeline_runs (model, status, decision, step, started_at, updated_at, record) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (model, status, decision, step, now, now, _dumps(body)),
            ).fetchone()
            run_id = int(found[0]) if found else 0
            action = "pipeline_run_start" if status == "running" else f"pipeline_run_{status}"
            summary: dict[str, Any] = {k: body[k] for k in ("trigger", "when") if k in body}
            self._audit(con, actor, action, f"model:{model}", {"run": run_id, **summary})
            row = self._pipeline_row(con, run_id)
        assert row is not None  # inserted in this transaction
        return self._run_row(row)

    def pipeline_run(self, run_id: int) -> dict[str, Any] | None:
        rows = self._read(f"{_PIPELINE_SELECT} WHERE id = %s", (run_id,))
        return self._run_row(rows[0]) if rows else None

    def pipeline_runs(
        self,
        model: str | None = None,
        status: str | None = None,
        decision: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        where, params = [], []
        for column, value in (("model", model), ("status", status), ("decision", decision)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        sql = _PIPELINE_SELECT + (f" WHERE {' AND '.join(where)}" if where else "")
        return [self._run_row(r) for r in self._read(sql + " ORDER BY id DESC LIMIT %s", (*params, limit))]

    def commit_run_step(
        self,
        run_id: int,
        changes: Mapping[str, Any],
        expect: Mapping[str, Any] | None = None,
        alias_move: AliasMove | None = None,
        audit: tuple[str, str, str, Mapping[str, Any]] | None = None,
    ) -> RunCommit:
        now = _now()
        update = self._run_record(changes, f"pipeline run {run_id}")
        with self._transaction() as con:
            row = self._pipeline_row(con, run_id)
            if row is None:
                raise RegistryError(f"there is no pipeline run {run_id} in the registry {self.location}")
            run = self._run_row(row)
            for key, value in (expect or {}).items():
                if run.get(key) != value:
                    return RunCommit(
                        False, run, conflict=f"run {run_id}'s {key} is {run.get(key)!r}, not {value!r}"
                    )
            old: int | None = None
            if alias_move is not None:
                m = alias_move
                old = self._alias_now(con, m.name, m.alias)
                if m.check and old != m.expected:
                    return RunCommit(
                        False,
                        run,
                        previous_version=old,
                        conflict=f"{m.name}@{m.alias} points at {old if old is not None else 'nothing'}, "
                        f"not {m.expected if m.expected is not None else 'nothing'}",
                    )
                con.execute(_ALIAS_UPSERT, (m.name, m.alias, m.version, m.actor, now))
                self._alias_moved(con, m.name, m.alias, old, m.version, m.actor, now)
            columns = {k: update.pop(k) for k in _RUN_FIELDS if k in update}
            record = {k: v for k, v in run.items() if k not in RUN_COLUMNS}
            record.update(update)
            assignments = "".join(f"{k} = %s, " for k in columns)
            con.execute(
                f"UPDATE pipeline_runs SET {assignments}updated_at = %s, record = %s WHERE id = %s",
                (*columns.values(), now, _dumps(record), run_id),
            )
            if audit is not None:
                self._audit(con, *audit)
            row = self._pipeline_row(con, run_id)
        assert row is not None  # read in this transaction
        return RunCommit(True, self._run_row(row), previous_version=old)

    # -- monitoring profiles -----------------------------------------------------------------------

    def monitor_profile(self, key: str) -> dict[str, Any] | None:
        rows = self._read("SELECT body FROM monitor_profiles WHERE key = %s", (key,))
        return self._json(rows[0][0], f"the monitoring profile '{key}'") if rows else None

    def save_monitor_profile(self, key: str, body: Mapping[str, Any]) -> None:
        with self._transaction() as con:
            con.execute(
                "INSERT INTO monitor_profiles VALUES (%s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
                "body = excluded.body, updated_at = excluded.updated_at",
                (key, json.dumps(body, sort_keys=True), _now()),
            )


# TCP keepalives and a user timeout: a server that vanished (a machine off, a network cut) is noticed
# in about half a minute, not after the kernel's two hours, by readers and by a lock's holder alike.
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # milliseconds unacknowledged data may wait
}


def _connection_options(url: str, connect_timeout: int) -> dict[str, Any]:
    """psycopg.connect's keyword arguments: the URL's own settings win over these defaults."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        given = conninfo_to_dict(url)
    except psycopg.Error:
        given = {}  # a malformed URL: connect() says what is wrong with it
    defaults: dict[str, Any] = {"connect_timeout": connect_timeout, "application_name": "featurestore"}
    defaults.update(_KEEPALIVES)
    return {"autocommit": True, **{k: v for k, v in defaults.items() if k not in given}}


class AdvisoryLock(AbstractContextManager[bool]):
    """The session-level advisory lock `name` of a registry (`exclusive_lock`), on a connection opened
    for it alone: a process that dies drops the connection and with it the lock, at once when the
    process dies and its machine stays up, within the TCP keepalive time when the machine vanishes.

    That connection is kept from the server's idle timeouts (`idle_session_timeout` would end the
    session, and the lock with it, while its holder works). A lock can still be lost (the server
    restarts, an admin ends the session): `check()` says so before a holder commits, and leaving a
    lost lock raises RegistryError rather than pass in silence."""

    def __init__(self, store: PostgresRegistryStore, name: str, wait: bool):
        self.store, self.name, self.wait = store, name, wait
        self.held = False
        self._key = (_NAMED_KEY.format(name=name),)
        self._con: psycopg.Connection[tuple[Any, ...]] | None = None

    def __enter__(self) -> bool:
        con = self._con = self.store._connect()
        try:
            con.execute("SET idle_in_transaction_session_timeout = 0")
            if con.info.server_version >= 140000:  # idle_session_timeout is new in PostgreSQL 14
                con.execute("SET idle_session_timeout = 0")
            if self.wait:
                con.execute(f"SELECT pg_advisory_lock({_KEY})", self._key)
                self.held = True
            else:
                row = con.execute(f"SELECT pg_try_advisory_lock({_KEY})", self._key).fetchone()
                self.held = bool(row and row[0])
        except psycopg.Error as e:
            self._con = None
            con.close()
            raise RegistryError(
                f"cannot take the lock '{self.name}' in the registry {self.store.location}: {self.store._why(e)}"
            ) from None
        return self.held

    def _lost(self, why: str, after: str) -> RegistryError:
        return RegistryError(
            f"lost the lock '{self.name}' in the registry {self.store.location} ({why}): another process "
            f"may have taken it meanwhile; {after}"
        )

    def check(self) -> None:
        """Raise RegistryError when the lock is no longer held (its connection is gone), so that its
        holder stops before committing what another holder may be writing too."""
        con = self._con
        if not self.held or con is None:
            return
        try:
            con.execute("SELECT 1")
        except psycopg.Error as e:
            raise self._lost(self.store._why(e), "nothing more was committed: run it again") from None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        con, self._con = self._con, None
        if con is None:
            return
        try:
            if self.held and exc_type is None:
                try:
                    row = con.execute(f"SELECT pg_advisory_unlock({_KEY})", self._key).fetchone()
                except psycopg.Error as e:
                    raise self._lost(self.store._why(e), "check what it wrote") from None
                if not (row and row[0]):
                    raise self._lost("the session no longer held it", "check what it wrote")
        finally:
            self.held = False
            con.close()  # ends the session, which releases its advisory locks


def _first_line(e: BaseException) -> str:
    """A driver error's first line (its message; the rest is hints and context)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
