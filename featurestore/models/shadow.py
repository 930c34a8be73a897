"""Shadow scoring: a model's `challenger` alias scored in the background on production's traffic.

    server = ModelServer(store)                    # shadowing is on while the prediction log is
    store.models.set_alias("eta", "challenger", 4)
    server.predict("eta@production", rows)         # answered by production, as before
    server.flush_shadow()                          # (tests) wait until the queue is scored
    store.monitor.shadow("eta")                    # production vs challenger on the same rows

Which requests: those whose reference resolves through the `production` alias ("eta@production",
or plain "eta" while it resolves to production) when the model has a `challenger` alias on a
different version. Requests by version number or by another alias are not shadowed.

Same feature vector: the challenger is scored on the columns the primary already assembled, so
after the *primary's* missing-value policy (a NOT_FOUND feature the primary nulls or defaults is
passed to the challenger the same way). Its features are matched by `ModelInput.ref`, its request
values by name. A challenger needing an input the primary's columns do not hold is not shadowed:
one warning per (model, challenger version), counted in `incompatible`.

Off the request path: `offer` (called by `ModelServer.finish`) only puts (challenger, its columns,
the rows, request id, time) on a bounded queue (full: the rows are dropped and counted). One daemon
thread drains it in micro-batches: everything queued (up to `batch_rows` rows, or after `wait`
seconds), concatenated per challenger version, one `predict` per batch, then the log rows
(`variant="shadow"`, the challenger's version, the primary's request id and row). Batching keeps
the thread's share of the GIL small. A challenger that raises is counted in `failed` and logged
(at most one warning per `WARN_EVERY` seconds); the client never sees it.

The scorer holds its server weakly (as the server's watcher does): an unclosed server is still
garbage-collected, and its shadow thread then drops what is queued (counted in `dropped`) and exits.
`close()` waits at most `DRAIN_SECONDS` for the queue to be scored: a challenger that hangs loses
the rest (counted in `dropped`, one warning), and nothing is appended to the log once it is closed.

The challenger is followed like any target of the server (`_targets[(name, "challenger")]`): found
by the thread when a model is first served through production, then re-resolved by every
`refresh()` (alias moves, created or deleted challengers), loaded before it is switched to. The
first shadow-eligible requests may go unshadowed while the thread finds and loads it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import UnknownNameError
from .prediction_log import LOG_COLUMNS

if TYPE_CHECKING:
    from .serving import LoadedModel, ModelServer, Prepared

log = logging.getLogger("featurestore.models")

CHALLENGER = "challenger"
PRODUCTION = "production"
WARN_EVERY = 60.0  # seconds between two warnings of a failing challenger
DRAIN_SECONDS = 2.0  # how long close() waits for the queue to be scored


@dataclass
class _Item:
    """One request's share of shadow work."""

    challenger: LoadedModel
    columns: dict[str, list[Any]]  # the challenger's inputs, by its own names, in its order
    missing: list[list[str]]  # per row: the challenger inputs that were missing (the primary's policy)
    rows: list[dict[str, Any]]
    request_id: str
    ts: datetime


class ShadowScorer:
    """The shadow queue and its worker thread, for one ModelServer (see the module docstring)."""

    def __init__(
        self, server: ModelServer, max_queued: int = 10_000, batch_rows: int = 4096, wait: float = 0.05
    ):
        # Weak: the worker thread must not keep an unclosed server (and its caches) alive.
        self._server: weakref.ref[ModelServer] = weakref.ref(server, self._server_gone)
        self.max_queued = max_queued
        self.batch_rows = batch_rows
        self.wait = wait
        self.scored = 0  # shadow predictions logged
        self.dropped = 0  # rows dropped: the queue was full
        self.failed = 0  # rows whose challenger raised (or answered not one prediction per row)
        self.incompatible = 0  # requests not shadowed: the challenger needs an input production lacks
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._busy = 0  # items taken off the queue and not yet logged
        self._scoring = 0  # rows taken off the queue and not yet logged (or failed)
        self._cond = threading.Condition()
        self._log_lock = threading.Lock()  # appends to the log vs close(): none after it
        self._closed = False
        self._gone = False  # the server was garbage-collected
        self._discover: set[str] = set()  # model names whose aliases the thread should look up
        self._checked: set[str] = set()  # model names whose aliases were looked up (refresh follows them)
        self._load: set[tuple[str, int]] = set()  # challenger versions the thread should load
        self._inputs: dict[tuple[str, int, int], tuple[tuple[str, str], ...] | None] = {}
        self._last_warning = 0.0
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="featurestore-shadow", daemon=True)
        self._thread.start()

    # -- the request path -----------------------------------------------------------------------------

    def offer(
        self,
        prepared: Prepared,
        columns: dict[str, list[Any]],
        missing: list[list[str]],
        ts: datetime,
    ) -> None:
        """Queue the challenger's scoring of this request, if it is shadowed (never raises, never blocks
        on I/O: lookups in dicts, the rest is the thread's)."""
        try:
            self._offer(prepared, columns, missing, ts)
        except Exception:  # shadowing must never fail a request
            log.exception("shadow scoring: cannot queue request %s", prepared.request_id)

    def _offer(
        self, prepared: Prepared, columns: dict[str, list[Any]], missing: list[list[str]], ts: datetime
    ) -> None:
        server = self._server()
        if server is None or self._closed:
            return
        mv = prepared.loaded.version
        name = mv.name
        targets = server._targets
        challenger = targets.get((name, CHALLENGER))
        if challenger is None:
            if name not in self._checked:
                self._wake_for(self._discover, name)
            return
        if challenger == mv.version or targets.get((name, PRODUCTION)) != mv.version:
            return
        loaded = server._loaded.get((name, challenger))
        if loaded is None:
            self._wake_for(self._load, (name, challenger))
            return
        pairs = self._pairs(prepared.loaded, loaded)
        if pairs is None:
            self.incompatible += 1
            return
        n = len(prepared.rows)
        own = {theirs: list(columns[ours]) for theirs, ours in pairs}  # the caller may change its copy
        renamed = {ours: theirs for theirs, ours in pairs}
        gaps = [[renamed[c] for c in row if c in renamed] for row in missing]
        item = _Item(loaded, own, gaps, prepared.rows, prepared.request_id, ts)
        with self._cond:
            if self._queued_rows + n > self.max_queued:
                self.dropped += n
                return
            self._queue.append(item)
            self._queued_rows += n
            self._cond.notify()

    def _pairs(self, primary: LoadedModel, challenger: LoadedModel) -> tuple[tuple[str, str], ...] | None:
        """(challenger column, primary column) for each challenger input, or None when the primary's
        columns lack one (warned once per model and challenger version). Computed once per pair."""
        key = (primary.name, primary.version.version, challenger.version.version)
        if key in self._inputs:
            return self._inputs[key]
        by_ref = {i.ref: i.name for i in primary.version.inputs if i.ref is not None}
        requests = {i.name for i in primary.version.inputs if i.ref is None}
        pairs: list[tuple[str, str]] = []
        lacking = None
        for inp in challenger.version.inputs:
            ours = (
                by_ref.get(inp.ref) if inp.ref is not None else (inp.name if inp.name in requests else None)
            )
            if ours is None:
                lacking = inp
                break
            pairs.append((inp.name, ours))
        result = tuple(pairs) if lacking is None else None
        if lacking is not None:
            what = f"feature {lacking.ref}" if lacking.ref is not None else f"request value '{lacking.name}'"
            log.warning(
                "shadow scoring: challenger %s needs %s, which production %s does not assemble: "
                "its requests are not shadowed",
                challenger.version.ref,
                what,
                primary.version.ref,
            )
        self._inputs[key] = result
        return result

    def _wake_for(self, todo: set[Any], what: Any) -> None:
        if what in todo:
            return
        with self._cond:
            todo.add(what)
            self._cond.notify()

    # -- following the challenger alias ---------------------------------------------------------------

    def after_refresh(self) -> None:
        """Called by `ModelServer.refresh` (under its refresh lock): look the production and challenger
        aliases up again for the models that lack one, so a created alias is found."""
        server = self._server()
        if server is None:
            return
        for name in list(self._checked):
            for alias in (PRODUCTION, CHALLENGER):
                if (name, alias) in server._targets:
                    continue
                try:
                    version = server.models.resolve(name, alias=alias)[1]
                    server._load(name, version)
                except UnknownNameError:
                    continue
                except Exception as e:  # a broken artifact: not shadowed until the next move
                    log.warning("shadow scoring: cannot load %s@%s: %s", name, alias, e)
                    continue
                server._targets[(name, alias)] = version

    def _find(self, name: str) -> None:
        """Look up `name`'s production and challenger aliases and follow them (like `_first_target`:
        filed under the refresh lock only if no alias moved meanwhile, else looked up again)."""
        server = self._server()
        if server is None:
            return
        while True:
            generation = server.models.generation()
            found = {}
            for alias in (PRODUCTION, CHALLENGER):
                try:
                    found[alias] = server.models.resolve(name, alias=alias)[1]
                except UnknownNameError:
                    pass
            with server._refresh_lock:
                if server.models.generation() == generation:
                    for alias, version in found.items():
                        server._targets.setdefault((name, alias), version)
                    self._checked.add(name)
                    break
        challenger = server._targets.get((name, CHALLENGER))
        if challenger is not None:
            server._load(name, challenger)

    # -- the worker -----------------------------------------------------------------------------------

    def _server_gone(self, _ref: Any) -> None:
        """The server was garbage-collected unclosed: the worker drops what is queued and exits."""
        with self._cond:  # a reentrant lock: safe when the collection runs in a thread holding it
            self._gone = True
            self._cond.notify_all()

    def _load_challenger(self, name: str, version: int) -> None:
        server = self._server()
        if server is not None:
            server._load(name, version)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._queue or self._discover or self._load or self._stop or self._gone):
                    self._cond.wait()
                if self._gone:
                    self.dropped += self._queued_rows
                    self._queue.clear()
                    self._queued_rows = 0
                    self._cond.notify_all()
                    return
                if not (self._queue or self._discover or self._load):
                    return  # stopped and drained
                discover, self._discover = self._discover, set()
                load, self._load = self._load, set()
                self._busy += 1  # until they are done: `flush` waits for them too
            try:
                for name in discover:
                    self._safely(f"cannot look up the aliases of model {name}", self._find, name)
                for name, version in load:
                    self._safely(f"cannot load {name}@{version}", self._load_challenger, name, version)
            finally:
                with self._cond:
                    self._busy -= 1
            if not self._stop:
                time.sleep(self.wait)  # let a micro-batch gather
            with self._cond:
                batch, rows = [], 0
                while self._queue and rows < self.batch_rows:
                    item = self._queue.popleft()
                    rows += len(item.rows)
                    batch.append(item)
                self._queued_rows -= rows
                self._scoring += rows
                self._busy += len(batch)
            try:
                if batch:
                    self._score(batch)
            finally:
                with self._cond:
                    self._busy -= len(batch)
                    self._cond.notify_all()

    def _safely(self, what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:  # the registry busy, an artifact gone: not shadowed until it loads
            self._warn(f"shadow scoring: {what}: {type(e).__name__}: {e}")

    def _score(self, batch: list[_Item]) -> None:
        groups: dict[tuple[str, int], list[_Item]] = {}
        for item in batch:
            groups.setdefault((item.challenger.name, item.challenger.version.version), []).append(item)
        for items in groups.values():
            n = sum(len(i.rows) for i in items)
            try:
                predictions = _predict(items)
            except Exception as e:
                with self._log_lock:
                    if not self._closed:  # else close() counted these rows as dropped
                        self.failed += n
                        self._scoring -= n
                mv = items[0].challenger.version
                self._warn(f"shadow scoring: challenger {mv.ref} failed on {n} rows: {type(e).__name__}: {e}")
                continue
            log_rows = _log_rows(items, predictions)
            with self._log_lock:
                if self._closed:  # close() gave up waiting and counted these rows as dropped
                    continue
                server = self._server()
                self._scoring -= n
                if server is None:  # collected meanwhile: nowhere to log them
                    self.dropped += n
                    continue
                if server.log is not None:
                    server.log.append(log_rows)
                del server
                self.scored += n

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY or self._last_warning == 0.0:
            self._last_warning = now
            log.warning(message)

    # -- waiting and stopping -------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued request (and pending alias lookup or load) is done; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self._queue or self._busy or self._discover or self._load:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = DRAIN_SECONDS) -> None:
        """Score what is queued (waiting at most `timeout` seconds), then stop the thread. What is left
        (a challenger that hangs) is counted in `dropped` and warned of; nothing is appended to the
        log after this returns."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=timeout)
        with self._log_lock:
            self._closed = True
            with self._cond:
                left = self._queued_rows + self._scoring
                self._queue.clear()
                self._queued_rows = self._scoring = 0
                self.dropped += left
                self._cond.notify_all()
        if left:
            log.warning(
                "shadow scoring: closed with %d rows not scored after %.1fs (the challenger is still "
                "busy): they are dropped",
                left,
                timeout,
            )


def _predict(items: list[_Item]) -> list[Any]:
    """The challenger's predictions for the items' rows, in one call."""
    from .serving import model_input, one_per_row

    loaded = items[0].challenger
    mv = loaded.version
    n = sum(len(i.rows) for i in items)
    if len(items) == 1:
        columns = items[0].columns
    else:
        columns = {c: [v for i in items for v in i.columns[c]] for c in mv.columns}
    X = model_input(columns, mv.columns, n, loaded.frame_columns if loaded.use_frame else None)
    return one_per_row(loaded.model.predict(X), mv, "predictions", n)


def _log_rows(items: list[_Item], predictions: list[Any]) -> list[dict[str, Any]]:
    """The shadow rows of the prediction log (columns as `ModelServer._log`'s, variant "shadow")."""
    from .serving import json_scalar

    loaded = items[0].challenger
    mv = loaded.version
    fields = [
        (k, f"entity_{k}" if k in LOG_COLUMNS else k) for k in (*loaded.join_keys, *loaded.request_fields)
    ]
    out = []
    p = 0
    for item in items:
        names = list(item.columns)
        for i, row in enumerate(item.rows):
            entry: dict[str, Any] = {
                "request_id": item.request_id,
                "ts": item.ts,
                "model": mv.name,
                "model_version": mv.version,
                "row": i,
                "variant": "shadow",
            }
            for k, column in fields:
                entry[column] = row.get(k)
            entry["features"] = {c: json_scalar(item.columns[c][i]) for c in names}
            entry["missing"] = item.missing[i]
            entry["prediction"] = predictions[p]
            p += 1
            out.append(entry)
    return out
