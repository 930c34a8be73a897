"""The registry: what has been applied, per-view watermarks, and the audit trail, in one SQLite file.

Every write is one transaction, so a failed apply leaves the registry as it was. Other parts
(the model registry) keep their tables in the same file through `transaction()`.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import FeatureStoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, spec TEXT NOT NULL,
    applied_by TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (kind, name));
CREATE TABLE IF NOT EXISTS object_history (
    kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, action TEXT NOT NULL, spec TEXT,
    applied_by TEXT NOT NULL, applied_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS watermarks (
    view TEXT PRIMARY KEY, watermark TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS materializations (
    view TEXT NOT NULL, start TEXT NOT NULL, "end" TEXT NOT NULL, rows INTEGER NOT NULL,
    online_rows INTEGER NOT NULL, finished_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS view_resets (
    view TEXT PRIMARY KEY, at TEXT NOT NULL, generation INTEGER NOT NULL, last_run INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def current_user() -> str:
    """Who is acting: $FS_USER, else the OS user."""
    try:
        return os.environ.get("FS_USER") or getpass.getuser()
    except Exception:
        return "unknown"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


class Registry:
    """The registry file. Safe to share between threads; each call uses its own short transaction."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._con().executescript(_SCHEMA)

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on any error)."""
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._con().execute(sql, params).fetchall()

    # -- applied definitions ---------------------------------------------------------------------

    def specs(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(k, n): json.loads(s) for k, n, s in self.read("SELECT kind, name, spec FROM objects")}

    def objects(self) -> list[dict[str, Any]]:
        rows = self.read(
            "SELECT kind, name, version, spec, applied_by, applied_at FROM objects ORDER BY kind, name"
        )
        return [
            {"kind": k, "name": n, "version": v, "spec": json.loads(s), "applied_by": b, "applied_at": a}
            for k, n, v, s, b, a in rows
        ]

    def versions(self) -> dict[tuple[str, str], int]:
        return {(k, n): v for k, n, v in self.read("SELECT kind, name, version FROM objects")}

    def generation(self) -> int:
        """A number that grows with every apply: cheap to poll for 'did the definitions change?'."""
        row = self.read("SELECT value FROM meta WHERE key = 'generation'")
        return int(row[0][0]) if row else 0

    def apply(
        self,
        changes: list[tuple[str, str, str, dict[str, Any] | None]],
        actor: str | None = None,
        stale_views: Sequence[str] = (),
    ) -> int:
        """Apply (action, kind, name, spec) changes in one transaction; action is add, change or remove.

        `stale_views` (`Plan.stale`) are reset in the same transaction: their watermark dropped, their
        runs so far no longer counted as covering anything (see `materialized_intervals`)."""
        actor = actor or current_user()
        now = _iso(utcnow())
        with self.transaction() as con:
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
                        "INSERT INTO objects VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, name) DO UPDATE SET "
                        "version = excluded.version, spec = excluded.spec, applied_by = excluded.applied_by, "
                        "applied_at = excluded.applied_at",
                        (kind, name, version, text, actor, now),
                    )
                con.execute(
                    "INSERT INTO object_history VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (kind, name, version, action, text, actor, now),
                )
            if changes:
                generation = self._bump(con)
                self._audit(con, actor, "apply", "definitions", {"changes": len(changes)})
                # The runs recorded so far, by rowid (commit order, unlike clocks): they stop counting.
                last_run = con.execute("SELECT COALESCE(MAX(rowid), 0) FROM materializations").fetchone()[0]
                for view in stale_views:
                    con.execute("DELETE FROM watermarks WHERE view = ?", (view,))
                    con.execute(
                        "INSERT INTO view_resets VALUES (?, ?, ?, ?) ON CONFLICT (view) DO UPDATE SET "
                        "at = excluded.at, generation = excluded.generation, last_run = excluded.last_run",
                        (view, now, generation, last_run),
                    )
            else:
                generation = self.generation()
        return generation

    def _bump(self, con: sqlite3.Connection) -> int:
        con.execute(
            "INSERT INTO meta VALUES ('generation', '1') ON CONFLICT (key) DO UPDATE "
            "SET value = CAST(value AS INTEGER) + 1"
        )
        return int(con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    # -- watermarks and materialization runs ---------------------------------------------------

    def watermark(self, view: str) -> datetime | None:
        row = self.read("SELECT watermark FROM watermarks WHERE view = ?", (view,))
        return datetime.fromisoformat(row[0][0]) if row else None

    def watermarks(self) -> dict[str, datetime]:
        return {v: datetime.fromisoformat(w) for v, w in self.read("SELECT view, watermark FROM watermarks")}

    def record_materialization(
        self,
        view: str,
        start: datetime,
        end: datetime,
        rows: int,
        online_rows: int,
        advance_watermark: bool,
        generation: int | None = None,
    ) -> bool:
        """Record a finished run; the watermark only moves forward, and only when asked.

        `generation`: the registry's generation when the run read the definitions. A run that read them
        before the apply that last reset the view wrote rows of the old definition: it is not recorded
        (False), so those rows count for nothing."""
        now = _iso(utcnow())
        with self.transaction() as con:
            if generation is not None:
                reset = con.execute("SELECT generation FROM view_resets WHERE view = ?", (view,)).fetchone()
                if reset is not None and reset[0] > generation:
                    return False
            con.execute(
                "INSERT INTO materializations VALUES (?, ?, ?, ?, ?, ?)",
                (view, _iso(start), _iso(end), rows, online_rows, now),
            )
            if advance_watermark:
                row = con.execute("SELECT watermark FROM watermarks WHERE view = ?", (view,)).fetchone()
                if row is None or datetime.fromisoformat(row[0]) < end:
                    con.execute(
                        "INSERT INTO watermarks VALUES (?, ?, ?) ON CONFLICT (view) DO UPDATE SET "
                        "watermark = excluded.watermark, updated_at = excluded.updated_at",
                        (view, _iso(end), now),
                    )
        return True

    _CURRENT_RUNS = (
        "FROM materializations WHERE view = ? AND rowid > "
        "COALESCE((SELECT last_run FROM view_resets WHERE view_resets.view = materializations.view), 0)"
    )

    def materialized_intervals(self, view: str) -> list[tuple[datetime, datetime]]:
        """The event-time ranges materialization has covered for a view since its last reset, merged,
        oldest first."""
        rows = self.read(f'SELECT start, "end" {self._CURRENT_RUNS}', (view,))
        spans = sorted((datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in rows)
        merged: list[tuple[datetime, datetime]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    def last_materialization(self, view: str) -> dict[str, Any] | None:
        row = self.read(
            f'SELECT start, "end", rows, online_rows, finished_at {self._CURRENT_RUNS} '
            "ORDER BY finished_at DESC LIMIT 1",
            (view,),
        )
        if not row:
            return None
        start, end, rows, online_rows, finished = row[0]
        return {"start": start, "end": end, "rows": rows, "online_rows": online_rows, "finished_at": finished}

    # -- audit trail -----------------------------------------------------------------------------

    def audit(
        self, action: str, target: str, detail: dict[str, Any] | None = None, actor: str | None = None
    ) -> None:
        """Append one entry to the audit trail."""
        with self.transaction() as con:
            self._audit(con, actor or current_user(), action, target, detail or {})

    @staticmethod
    def _audit(con: sqlite3.Connection, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        con.execute(
            "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            (_iso(utcnow()), actor, action, target, json.dumps(detail, sort_keys=True, default=str)),
        )

    def audit_log(self, action: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        sql = "SELECT at, actor, action, target, detail FROM audit"
        params: tuple[Any, ...] = ()
        if action:
            sql += " WHERE action = ?"
            params = (action,)
        rows = self.read(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [
            {"at": a, "actor": b, "action": c, "target": d, "detail": json.loads(e)} for a, b, c, d, e in rows
        ]


class RegistryError(FeatureStoreError):
    """The registry file is unreadable or from an incompatible version."""
