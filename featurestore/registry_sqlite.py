"""The SQLite registry backend: the whole registry in one SQLite file (WAL), see `RegistryStore`.

Writes are `BEGIN IMMEDIATE` transactions, so writers in other threads and processes wait for each
other (up to 30 s) and a failed write leaves the file as it was. Each thread has its own connection.

The schema is `MIGRATIONS`, applied in order on open; `schema_migrations` records each one applied.
A registry file from before schema versioning has the tables of migration 1 and no
`schema_migrations`: migration 1 (CREATE TABLE IF NOT EXISTS) keeps its rows, the later ones apply.
Never edit a migration that has shipped: append a new one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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

# (version, name, statements). Statements of one migration run in one transaction.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "initial tables",
        (
            """CREATE TABLE IF NOT EXISTS objects (
            kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, spec TEXT NOT NULL,
            applied_by TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (kind, name))""",
            """CREATE TABLE IF NOT EXISTS object_history (
            kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, action TEXT NOT NULL, spec TEXT,
            applied_by TEXT NOT NULL, applied_at TEXT NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS watermarks (
            view TEXT PRIMARY KEY, watermark TEXT NOT NULL, updated_at TEXT NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS materializations (
            view TEXT NOT NULL, start TEXT NOT NULL, "end" TEXT NOT NULL, rows INTEGER NOT NULL,
            online_rows INTEGER NOT NULL, finished_at TEXT NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS view_resets (
            view TEXT PRIMARY KEY, at TEXT NOT NULL, generation INTEGER NOT NULL, last_run INTEGER NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
            target TEXT NOT NULL, detail TEXT NOT NULL)""",
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            """CREATE TABLE IF NOT EXISTS model_versions (
            name TEXT NOT NULL, version INTEGER NOT NULL, flavor TEXT NOT NULL, format TEXT NOT NULL,
            artifact TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, details TEXT NOT NULL,
            feature_service TEXT NOT NULL, signature TEXT NOT NULL, training_set TEXT, training_fingerprint TEXT,
            metrics TEXT NOT NULL, params TEXT NOT NULL, tags TEXT NOT NULL, description TEXT NOT NULL,
            missing_policy TEXT NOT NULL, registered_by TEXT NOT NULL, registered_at TEXT NOT NULL,
            PRIMARY KEY (name, version))""",
            """CREATE TABLE IF NOT EXISTS model_aliases (
            name TEXT NOT NULL, alias TEXT NOT NULL, version INTEGER NOT NULL, set_by TEXT NOT NULL,
            set_at TEXT NOT NULL, PRIMARY KEY (name, alias))""",
            """CREATE TABLE IF NOT EXISTS model_alias_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, alias TEXT NOT NULL, old_version INTEGER,
            new_version INTEGER, actor TEXT NOT NULL, at TEXT NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS training_sets (
            name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, record TEXT NOT NULL, description TEXT NOT NULL,
            created_by TEXT NOT NULL, created_at TEXT NOT NULL)""",
        ),
    ),
    (2, "where each definition is defined", ("ALTER TABLE objects ADD COLUMN location TEXT",)),
    (
        3,
        "online watermarks per online store",
        (
            """CREATE TABLE IF NOT EXISTS online_watermarks (
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
            """CREATE TABLE IF NOT EXISTS monitor_profiles (
            key TEXT PRIMARY KEY, body TEXT NOT NULL, updated_at TEXT NOT NULL)""",
        ),
    ),
    (
        6,
        "training pipeline runs",
        (
            """CREATE TABLE IF NOT EXISTS pipeline_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, status TEXT NOT NULL, decision TEXT,
            step TEXT NOT NULL, started_at TEXT NOT NULL, updated_at TEXT NOT NULL, record TEXT NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS pipeline_runs_by_model ON pipeline_runs (model, id)",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

_COLUMNS = ", ".join(MODEL_VERSION_FIELDS)
_CURRENT_RUNS = (
    "FROM materializations WHERE view = ? AND rowid > "
    "COALESCE((SELECT last_run FROM view_resets WHERE view_resets.view = materializations.view), 0)"
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class SQLiteRegistryStore(RegistryStore):
    """A registry in the SQLite file `path` (created, with its folder, when missing)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.location = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._create_or_check()
        self._migrate()

    def _create_or_check(self) -> None:
        """Create a missing registry file whole; refuse an empty (0-byte) one.

        A 0-byte registry file is damage (a disk-full truncation), not a new registry: taking it as
        one would silently start over. So that no process ever sees a 0-byte file of ours, a new
        registry is made beside the path (its header written) and hard-linked into place."""
        if not self.path.exists():
            tmp = self.path.with_name(f".{self.path.name}.new-{os.getpid()}-{threading.get_ident()}")
            try:
                con = sqlite3.connect(tmp)
                try:
                    con.execute("PRAGMA journal_mode=WAL")  # writes the file's header
                finally:
                    con.close()
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    pass  # another process created it meanwhile: use theirs
                except OSError:
                    pass  # no hard links here: sqlite creates the file on first connect
            except sqlite3.Error as e:
                raise self.unreadable(str(e)) from e
            finally:
                tmp.unlink(missing_ok=True)
        try:
            size = self.path.stat().st_size
        except OSError:
            return  # created on first connect (see above)
        if size == 0:
            raise self.unreadable("the file is empty (0 bytes)")

    # -- connections, transactions and errors ----------------------------------------------------

    def _con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                con.close()
                raise
            self._local.con = con
        return con

    def unreadable(self, problem: str) -> RegistryError:
        """The error for a registry file that cannot be read as one."""
        return unreadable_error(str(self.path), problem)

    def _translate(self, e: sqlite3.Error) -> RegistryError:
        text = str(e)
        if isinstance(e, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return RegistryError(f"the registry {self.path} is busy (another process holds its lock): {text}")
        return self.unreadable(text)

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._con()
        except sqlite3.Error as e:
            raise self._translate(e) from e

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            con = self._con()
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except sqlite3.Error as e:
            raise self._translate(e) from e

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._reading() as con:
            return con.execute(sql, params).fetchall()

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
        with self._reading() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise RegistryError(
                f"the registry {self.path} has schema version {current}, newer than this featurestore knows "
                f"({SCHEMA_VERSION}): upgrade featurestore to use it"
            )
        for version, name, statements in MIGRATIONS:
            if version <= current:
                continue
            with self._transaction() as con:
                # Another process may have applied it since we looked.
                done = con.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone()
                if done:
                    continue
                for statement in statements:
                    con.execute(statement)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, _now()))

    def schema_version(self) -> int:
        row = self._read("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        return self._int(row[0][0], "schema_migrations")

    def close(self) -> None:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is not None:
            self._local.con = None
            con.close()

    def backup(self, destination: Path) -> None:
        try:
            source = sqlite3.connect(self.path, timeout=30)
            try:
                target = sqlite3.connect(destination)
                try:
                    source.backup(target)  # sqlite3's online backup: a consistent snapshot
                    target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
                    check = target.execute("PRAGMA integrity_check").fetchone()[0]
                finally:
                    target.close()
            finally:
                source.close()
        except sqlite3.Error as e:
            raise self._translate(e) from e
        if check != "ok":
            raise self.unreadable(f"the copy fails SQLite's integrity check: {check}")

    # -- copying between backends ------------------------------------------------------------------

    # Tables whose order is SQLite's rowid (they have no id column): exported and imported as "id".
    _ROWID_TABLES = frozenset({"object_history", "materializations"})

    def _columns(self, table: str) -> str:
        return ", ".join(
            "rowid" if c == "id" and table in self._ROWID_TABLES else f'"{c}"' for c in REGISTRY_TABLES[table]
        )

    def export_rows(self) -> TableRows:
        try:
            con = self._con()
            con.execute("BEGIN")  # a read transaction: one snapshot of every table (WAL)
            try:
                out: TableRows = {}
                for table, columns in REGISTRY_TABLES.items():
                    order = " ORDER BY 1" if columns[0] == "id" else ""
                    out[table] = con.execute(f"SELECT {self._columns(table)} FROM {table}{order}").fetchall()
            finally:
                con.execute("COMMIT")
        except sqlite3.Error as e:
            raise self._translate(e) from e
        return out

    def import_rows(self, rows: TableRows) -> None:
        with self._transaction() as con:
            for table in REGISTRY_TABLES:
                if con.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
                    raise RegistryError(
                        f"the registry {self.path} is not empty (table {table} has rows): copy into a new file"
                    )
            for table, columns in REGISTRY_TABLES.items():
                marks = ", ".join("?" * len(columns))
                con.executemany(
                    f"INSERT INTO {table} ({self._columns(table)}) VALUES ({marks})", rows.get(table, [])
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
        row = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return self._int(row[0][0], f"meta '{key}'") if row else 0

    @staticmethod
    def _bump(con: sqlite3.Connection, key: str) -> int:
        con.execute(
            "INSERT INTO meta VALUES (?, '1') ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
            (key,),
        )
        return int(con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

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
                    "SELECT version FROM objects WHERE kind = ? AND name = ?", (kind, name)
                ).fetchone()
                version = (row[0] if row else 0) + (0 if action == "remove" else 1)
                if action == "remove":
                    con.execute("DELETE FROM objects WHERE kind = ? AND name = ?", (kind, name))
                    text = None
                else:
                    text = json.dumps(spec, sort_keys=True)
                    con.execute(
                        "INSERT INTO objects (kind, name, version, spec, applied_by, applied_at) "
                        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, name) DO UPDATE SET "
                        "version = excluded.version, spec = excluded.spec, applied_by = excluded.applied_by, "
                        "applied_at = excluded.applied_at",
                        (kind, name, version, text, actor, now),
                    )
                con.execute(
                    "INSERT INTO object_history VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (kind, name, version, action, text, actor, now),
                )
            for (kind, name), where in (locations or {}).items():
                con.execute(
                    "UPDATE objects SET location = ? WHERE kind = ? AND name = ?", (where, kind, name)
                )
            if changes:
                generation = self._bump(con, "generation")
                self._audit(con, actor, "apply", "definitions", {"changes": len(changes)})
                # The runs recorded so far, by rowid (commit order, unlike clocks): they stop counting.
                last_run = con.execute("SELECT COALESCE(MAX(rowid), 0) FROM materializations").fetchone()[0]
                for view in stale_views:
                    con.execute("DELETE FROM watermarks WHERE view = ?", (view,))
                    con.execute("DELETE FROM online_watermarks WHERE view = ?", (view,))
                    con.execute(
                        "INSERT INTO view_resets VALUES (?, ?, ?, ?) ON CONFLICT (view) DO UPDATE SET "
                        "at = excluded.at, generation = excluded.generation, last_run = excluded.last_run",
                        (view, now, generation, last_run),
                    )
            else:
                row = con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
                generation = self._int(row[0], "meta 'generation'") if row else 0
        return generation

    # -- watermarks and materialization runs -------------------------------------------------------

    def watermark(self, view: str) -> datetime | None:
        row = self._read("SELECT watermark FROM watermarks WHERE view = ?", (view,))
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
                    "SELECT generation FROM view_resets WHERE view = ?", (run.view,)
                ).fetchone()
                if reset is not None and reset[0] > generation:
                    return False
            con.execute(
                'INSERT INTO materializations (view, start, "end", rows, online_rows, finished_at, '
                "source_fingerprint, stats) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
                row = con.execute("SELECT watermark FROM watermarks WHERE view = ?", (run.view,)).fetchone()
                if row is None or self._time(row[0], f"the watermark of view '{run.view}'") < run.end:
                    con.execute(
                        "INSERT INTO watermarks VALUES (?, ?, ?) ON CONFLICT (view) DO UPDATE SET "
                        "watermark = excluded.watermark, updated_at = excluded.updated_at",
                        (run.view, _iso(run.end), now),
                    )
            if online_store is not None:
                row = con.execute(
                    "SELECT watermark FROM online_watermarks WHERE view = ? AND store = ?",
                    (run.view, online_store),
                ).fetchone()
                if row is None or self._time(row[0], f"the online watermark of view '{run.view}'") < run.end:
                    con.execute(
                        "INSERT INTO online_watermarks VALUES (?, ?, ?, ?) ON CONFLICT (view, store) DO UPDATE SET "
                        "watermark = excluded.watermark, updated_at = excluded.updated_at",
                        (run.view, online_store, _iso(run.end), now),
                    )
        return True

    def online_watermarks(self, online_store: str) -> dict[str, datetime]:
        return {
            v: self._time(w, f"the online watermark of view '{v}'")
            for v, w in self._read(
                "SELECT view, watermark FROM online_watermarks WHERE store = ?", (online_store,)
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
        return self._runs(
            self._read(
                f'SELECT view, start, "end", rows, online_rows, finished_at, source_fingerprint, stats {_CURRENT_RUNS} ORDER BY rowid',
                (view,),
            )
        )

    def runs(self, view: str | None = None, limit: int | None = None) -> list[MaterializationRun]:
        sql = 'SELECT view, start, "end", rows, online_rows, finished_at, source_fingerprint, stats FROM materializations'
        where: str
        params: tuple[Any, ...]
        where, params = ("", ()) if view is None else (" WHERE view = ?", (view,))
        if limit is None:
            return self._runs(self._read(sql + where + " ORDER BY rowid", params))
        newest = self._read(sql + where + " ORDER BY rowid DESC LIMIT ?", (*params, limit))
        return self._runs(list(reversed(newest)))

    # -- audit trail -------------------------------------------------------------------------------

    def audit(self, actor: str, action: str, target: str, detail: Mapping[str, Any]) -> None:
        with self._transaction() as con:
            self._audit(con, actor, action, target, detail)

    @staticmethod
    def _audit(
        con: sqlite3.Connection, actor: str, action: str, target: str, detail: Mapping[str, Any]
    ) -> None:
        con.execute(
            "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            (_now(), actor, action, target, _dumps(dict(detail))),
        )

    def audit_log(self, action: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        sql = "SELECT at, actor, action, target, detail FROM audit"
        params: tuple[Any, ...] = ()
        if action:
            sql += " WHERE action = ?"
            params = (action,)
        rows = self._read(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [
            {"at": a, "actor": b, "action": c, "target": d, "detail": self._json(e, "an audit entry")}
            for a, b, c, d, e in rows
        ]

    # -- models ------------------------------------------------------------------------------------

    def models_generation(self) -> int:
        return self._meta_int("models_generation")

    def add_model_version(self, name: str, build: Callable[[int], dict[str, Any]]) -> int:
        with self._transaction() as con:
            row = con.execute("SELECT MAX(version) FROM model_versions WHERE name = ?", (name,)).fetchone()
            version = (row[0] or 0) + 1
            record = {**build(version), "name": name, "version": version}
            values = [
                _dumps(record[f]) if f in MODEL_JSON_FIELDS else record[f] for f in MODEL_VERSION_FIELDS
            ]
            con.execute(
                f"INSERT INTO model_versions ({_COLUMNS}) VALUES ({', '.join('?' * len(values))})", values
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
            rows = self._read(sql + " WHERE name = ? ORDER BY version", (name,))
        return [self._model_row(r) for r in rows]

    def model_version(self, name: str, version: int) -> dict[str, Any] | None:
        rows = self._read(
            f"SELECT {_COLUMNS} FROM model_versions WHERE name = ? AND version = ?", (name, version)
        )
        return self._model_row(rows[0]) if rows else None

    def model_aliases(self, name: str | None = None) -> dict[tuple[str, str], int]:
        sql = "SELECT name, alias, version FROM model_aliases"
        params: tuple[str, ...] = ()
        if name is not None:
            sql, params = sql + " WHERE name = ?", (name,)
        return {(n, a): v for n, a, v in self._read(sql, params)}

    def set_model_alias(self, name: str, alias: str, version: int, actor: str) -> int | None:
        now = _now()
        with self._transaction() as con:
            row = con.execute(
                "SELECT version FROM model_aliases WHERE name = ? AND alias = ?", (name, alias)
            ).fetchone()
            old: int | None = row[0] if row else None
            con.execute(
                "INSERT INTO model_aliases VALUES (?, ?, ?, ?, ?) ON CONFLICT (name, alias) DO UPDATE SET "
                "version = excluded.version, set_by = excluded.set_by, set_at = excluded.set_at",
                (name, alias, version, actor, now),
            )
            self._alias_moved(con, name, alias, old, version, actor, now)
        return old

    def delete_model_alias(self, name: str, alias: str, actor: str) -> int | None:
        with self._transaction() as con:
            row = con.execute(
                "SELECT version FROM model_aliases WHERE name = ? AND alias = ?", (name, alias)
            ).fetchone()
            if row is None:
                return None
            con.execute("DELETE FROM model_aliases WHERE name = ? AND alias = ?", (name, alias))
            self._alias_moved(con, name, alias, row[0], None, actor, _now())
        return int(row[0])

    def _alias_moved(
        self,
        con: sqlite3.Connection,
        name: str,
        alias: str,
        old: int | None,
        new: int | None,
        actor: str,
        at: str,
    ) -> None:
        con.execute(
            "INSERT INTO model_alias_history (name, alias, old_version, new_version, actor, at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (name, alias, old, new, actor, at),
        )
        self._bump(con, "models_generation")

    def model_alias_history(self, name: str) -> list[dict[str, Any]]:
        rows = self._read(
            "SELECT alias, old_version, new_version, actor, at FROM model_alias_history WHERE name = ? ORDER BY id",
            (name,),
        )
        return [
            {"alias": a, "old_version": old, "new_version": new, "actor": actor, "at": at}
            for a, old, new, actor, at in rows
        ]

    # -- saved training sets -----------------------------------------------------------------------

    def training_set(self, name: str) -> dict[str, Any] | None:
        rows = self._read(
            "SELECT name, fingerprint, record, description, created_by, created_at FROM training_sets WHERE name = ?",
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
                "INSERT INTO training_sets VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
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

    _RUN_SELECT = f"SELECT {', '.join(RUN_COLUMNS)}, record FROM pipeline_runs"
    _RUN_FIELDS = ("status", "decision", "step")

    def _run_row(self, row: tuple[Any, ...]) -> dict[str, Any]:
        run = dict(zip(RUN_COLUMNS, row[:-1], strict=True))
        record = self._json(row[-1], f"pipeline run {run['id']}")
        if not isinstance(record, dict):
            raise self.unreadable(f"pipeline run {run['id']} holds {str(row[-1])[:40]!r}, not a JSON object")
        return {**record, **run}

    @staticmethod
    def _run_record(values: Mapping[str, Any], what: str) -> dict[str, Any]:
        clash = [k for k in values if k in RUN_COLUMNS and k not in SQLiteRegistryStore._RUN_FIELDS]
        if clash:
            raise RegistryError(f"{what}: {clash} are kept by the registry itself, not in a run's record")
        record: dict[str, Any] = json.loads(_dumps(dict(values)))
        return record

    def add_pipeline_run(self, model: str, record: Mapping[str, Any], actor: str) -> dict[str, Any]:
        now = _now()
        body = self._run_record(record, f"a run of model '{model}'")
        status = body.pop("status", "running")
        decision = body.pop("decision", None)
        step = body.pop("step", "started")
        with self._transaction() as con:
            cur = con.execute(
                "INSERT INTO pipeline_runs (model, status, decision, step, started_at, updated_at, record) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (model, status, decision, step, now, now, _dumps(body)),
            )
            run_id = int(cur.lastrowid or 0)
            action = "pipeline_run_start" if status == "running" else f"pipeline_run_{status}"
            summary: dict[str, Any] = {k: body[k] for k in ("trigger", "when") if k in body}
            self._audit(con, actor, action, f"model:{model}", {"run": run_id, **summary})
            row = con.execute(f"{self._RUN_SELECT} WHERE id = ?", (run_id,)).fetchone()
        return self._run_row(row)

    def pipeline_run(self, run_id: int) -> dict[str, Any] | None:
        rows = self._read(f"{self._RUN_SELECT} WHERE id = ?", (run_id,))
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
                where.append(f"{column} = ?")
                params.append(value)
        sql = self._RUN_SELECT + (f" WHERE {' AND '.join(where)}" if where else "")
        return [self._run_row(r) for r in self._read(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))]

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
            row = con.execute(f"{self._RUN_SELECT} WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RegistryError(f"there is no pipeline run {run_id} in the registry {self.path}")
            run = self._run_row(row)
            for key, value in (expect or {}).items():
                if run.get(key) != value:
                    return RunCommit(
                        False, run, conflict=f"run {run_id}'s {key} is {run.get(key)!r}, not {value!r}"
                    )
            old: int | None = None
            if alias_move is not None:
                m = alias_move
                found = con.execute(
                    "SELECT version FROM model_aliases WHERE name = ? AND alias = ?", (m.name, m.alias)
                ).fetchone()
                old = found[0] if found else None
                if m.check and old != m.expected:
                    return RunCommit(
                        False,
                        run,
                        previous_version=old,
                        conflict=f"{m.name}@{m.alias} points at {old if old is not None else 'nothing'}, "
                        f"not {m.expected if m.expected is not None else 'nothing'}",
                    )
                con.execute(
                    "INSERT INTO model_aliases VALUES (?, ?, ?, ?, ?) ON CONFLICT (name, alias) DO UPDATE SET "
                    "version = excluded.version, set_by = excluded.set_by, set_at = excluded.set_at",
                    (m.name, m.alias, m.version, m.actor, now),
                )
                self._alias_moved(con, m.name, m.alias, old, m.version, m.actor, now)
            columns = {k: update.pop(k) for k in self._RUN_FIELDS if k in update}
            record = {k: v for k, v in run.items() if k not in RUN_COLUMNS}
            record.update(update)
            assignments = ", ".join(f"{k} = ?" for k in columns)
            con.execute(
                f"UPDATE pipeline_runs SET {assignments + ', ' if assignments else ''}updated_at = ?, record = ? "
                "WHERE id = ?",
                (*columns.values(), now, _dumps(record), run_id),
            )
            if audit is not None:
                self._audit(con, *audit)
            row = con.execute(f"{self._RUN_SELECT} WHERE id = ?", (run_id,)).fetchone()
        return RunCommit(True, self._run_row(row), previous_version=old)

    # -- monitoring profiles -----------------------------------------------------------------------

    def monitor_profile(self, key: str) -> dict[str, Any] | None:
        rows = self._read("SELECT body FROM monitor_profiles WHERE key = ?", (key,))
        return self._json(rows[0][0], f"the monitoring profile '{key}'") if rows else None

    def save_monitor_profile(self, key: str, body: Mapping[str, Any]) -> None:
        with self._transaction() as con:
            con.execute(
                "INSERT INTO monitor_profiles VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "body = excluded.body, updated_at = excluded.updated_at",
                (key, json.dumps(body, sort_keys=True), _now()),
            )
