"""Predictions: look a model's features up online, run the model, log what was served.

    server = ModelServer(store)                        # once per process (the HTTP app keeps one)
    out = server.predict("eta@production", [{"driver_id": 1001}], return_features=True)
    out["predictions"], out["version"], out["features"]
    server.close()                                     # flushes the prediction log

One prediction is: resolve the reference to a loaded model (a dict lookup), ONE online lookup of the
model's features (its frozen signature, see featurestore.models.registry), assemble the columns in the
order the model expects, apply its missing-value policy, `model.predict`, buffer a log row per entity
row. Nothing is read from the registry on that path. A model that does not answer one prediction per
row raises ModelOutputError (HTTP 500, code `model_error`) and nothing is logged.

Models are loaded once per version and kept. A reference by alias ("eta@production", or "eta" = its
production alias, else its latest version) is resolved when first used and re-resolved when aliases
move: at once for moves made through this process's `store.models`, and within `refresh_interval`
seconds for moves made elsewhere (the CLI, another server), by a background watcher. The new version
is loaded *before* the reference is switched, and a request reads the reference once, so requests
during a swap are answered by the old or the new version, never fail.

Missing values: a feature whose status is NOT_FOUND or OUTSIDE_MAX_AGE is handled by the version's
`missing_policy`: "fail" raises MissingFeatureError (HTTP 422) naming the row and feature; "null"
passes a missing value (NaN) to the model; {"feature": default} substitutes defaults for the listed
features (the others fail).

Shadow scoring (`featurestore.models.shadow`): a request through the `production` alias of a model
that also has a `challenger` alias is scored by the challenger too, in a background thread, on the
same assembled columns; the response is unchanged and the challenger's predictions are logged with
`variant="shadow"`. `flush_shadow()` waits for that queue; `close()` drains it before the log.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import ModelRegistryError, RetrievalError, UnknownNameError
from .prediction_log import LOG_COLUMNS, PredictionLog
from .registry import ModelVersion, parse_model_ref

if TYPE_CHECKING:
    from ..store import FeatureStore
    from .shadow import ShadowScorer

log = logging.getLogger("featurestore.models")

PRESENT = "PRESENT"


class MissingFeatureError(RetrievalError):
    """A feature the model needs is NOT_FOUND or OUTSIDE_MAX_AGE and its policy is to fail (HTTP 422)."""


class PredictionFailed(ModelRegistryError):
    """The model raised on the features it was given (e.g. a null it cannot take): HTTP 422."""


class ModelUnavailable(ModelRegistryError):
    """A registered version could not be loaded (artifact modified or gone, library missing): HTTP 503."""


class ModelOutputError(ModelRegistryError):
    """The model did not answer one prediction per row (a fault of the model, not of the request):
    HTTP 500 with code `model_error`. Nothing is logged as a prediction."""


@dataclass
class LoadedModel:
    """One model version, ready to predict: the object, its inputs and what a lookup needs."""

    version: ModelVersion
    model: Any
    join_keys: tuple[str, ...]
    use_frame: bool  # fitted on a DataFrame: pass one, so scikit-learn checks column names
    frame_columns: Any = None  # the pandas Index of those columns, built once (a quarter of a frame's cost)
    #: the request values logged with each row: the model's own, and those its on-demand views read
    #: (so monitoring's skew audit can recompute them)
    request_fields: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.version.name


@dataclass
class Prepared:
    """A predict request after resolution: which model, and the rows the lookup is given."""

    loaded: LoadedModel
    rows: list[dict[str, Any]]
    request_id: str
    shadow: bool = False  # resolved through the production alias (by name or by default): shadowed


class ModelServer:
    """Loads models once, hot-swaps them when aliases move, and answers predictions (see module doc)."""

    def __init__(
        self,
        store: FeatureStore,
        log_predictions: bool = True,
        refresh_interval: float = 1.0,
        prediction_log: PredictionLog | None = None,
        watch: bool = True,
        shadow: bool = True,
    ):
        self.store = store
        self.models = store.models
        self.refresh_interval = refresh_interval
        self.log: PredictionLog | None = None
        if log_predictions:
            root = store.monitor.log_path  # a folder, or object storage (s3://...)
            self.log = (prediction_log or PredictionLog(root, flush_interval=refresh_interval)).start()
        self._loaded: dict[tuple[str, int], LoadedModel] = {}
        self._targets: dict[tuple[str, str | None], int] = {}  # (name, alias or None=default) -> version
        self._pinned: set[tuple[str, int]] = set()  # versions asked for by number: kept loaded
        self._load_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._generation = self.models.generation()
        self._closed = threading.Event()
        self._listener = _weak_listener(self)
        self.models.subscribe(self._listener)
        self._shadow: ShadowScorer | None = None
        if shadow and self.log is not None:
            from .shadow import ShadowScorer

            self._shadow = ShadowScorer(self)
        self._watcher: threading.Thread | None = None
        if watch:
            self._watcher = threading.Thread(
                target=_watch,
                args=(weakref.ref(self), self._closed, refresh_interval),
                name="featurestore-model-watcher",
                daemon=True,
            )
            self._watcher.start()

    # -- resolving and loading ------------------------------------------------------------------------

    def get(self, ref: str, version: int | None = None, alias: str | None = None) -> LoadedModel:
        """The loaded model a reference points at now (loads it on first use)."""
        name, pinned, alias = parse_model_ref(ref, version, alias)
        version = pinned
        if version is None:
            version = self._targets.get((name, alias))
            if version is None:
                version = self._first_target(name, alias)
        loaded = self._loaded.get((name, version))
        if loaded is None:
            loaded = self._load(name, version)
            if pinned is not None:
                self._pinned.add((name, version))  # only versions that exist: a bad request pins nothing
        return loaded

    def _first_target(self, name: str, alias: str | None) -> int:
        """Resolve a reference used for the first time, and keep following it. An alias moved while it
        was being resolved (the registry's models generation changed) may have been missed, and a
        refresh for that move could not see this reference: then it is resolved again (else it would
        serve the old version until the next move). Filed under the refresh lock, so a refresh runs
        before (and this resolution sees its move) or after (and sees this reference)."""
        while True:
            generation = self.models.generation()
            version = self.models.resolve(name, alias=alias)[1]
            with self._refresh_lock:
                if self.models.generation() == generation:
                    return self._targets.setdefault((name, alias), version)

    def cached(self, ref: str, version: int | None = None, alias: str | None = None) -> LoadedModel | None:
        """The loaded model a reference points at, if it is loaded already (no I/O: safe on an event loop)."""
        name, version, alias = parse_model_ref(ref, version, alias)
        if version is None:
            version = self._targets.get((name, alias))
            if version is None:
                return None
        return self._loaded.get((name, version))

    def _load(self, name: str, version: int) -> LoadedModel:
        with self._load_lock:
            loaded = self._loaded.get((name, version))
            if loaded is not None:
                return loaded
            mv = self.models.get(name, version)
            try:
                model = self.models.load_version(mv)
            except ModelRegistryError as e:
                raise ModelUnavailable(str(e)) from e
            requests = self.store.catalog.resolve(mv.feature_refs) if mv.feature_refs else []
            keys: list[str] = []
            extra = list(mv.request_features)
            for r in requests:
                keys += [k for k in r.view.join_keys if k not in keys]
                for source in getattr(r.view, "request_sources", ()):
                    extra += [f.name for f in source.schema if f.name not in extra]
            use_frame = getattr(model, "feature_names_in_", None) is not None
            columns = None
            if use_frame:
                import pandas as pd

                columns = pd.Index(mv.columns)
            loaded = LoadedModel(mv, model, tuple(keys), use_frame, columns, tuple(extra))
            self._loaded[(name, version)] = loaded
            return loaded

    def refresh(self) -> None:
        """Re-resolve every alias in use; load new targets first, then switch (requests never wait).

        A deleted alias is dropped (its next request gets the usual unknown-alias error); a target that
        fails to load keeps the version it had. Versions nothing points at any more are unloaded,
        except those asked for by number.
        """
        with self._refresh_lock:
            self._generation = self.models.generation()
            targets = dict(self._targets)
            fresh: dict[tuple[str, str | None], int] = {}
            gone = []
            for (name, alias), old in targets.items():
                try:
                    version = self.models.resolve(name, alias=alias)[1]
                    if version != old:
                        self._load(name, version)
                except UnknownNameError:
                    gone.append((name, alias))
                    continue
                except Exception as e:  # a broken artifact, the registry busy: keep serving what we have
                    log.warning("model %s@%s: keeping version %s: %s", name, alias or "default", old, e)
                    version = old
                fresh[(name, alias)] = version
            self._targets.update(fresh)  # one dict update: a request sees the old or the new version
            for key in gone:
                self._targets.pop(key, None)
            if self._shadow is not None:
                self._shadow.after_refresh()
            for key, version in fresh.items():
                if version != targets[key]:
                    log.info(
                        "model %s@%s now serves version %s (was %s)",
                        key[0],
                        key[1] or "default",
                        version,
                        targets[key],
                    )
            in_use = {(name, v) for (name, _), v in self._targets.items()} | self._pinned
            for unused in [k for k in self._loaded if k not in in_use]:
                self._loaded.pop(unused, None)  # requests holding it finish with it

    def _check_generation(self) -> None:
        if self.models.generation() != self._generation:
            self.refresh()

    # -- predicting ----------------------------------------------------------------------------------

    def prepare(
        self,
        ref: str,
        entity_rows: Any,
        version: int | None = None,
        alias: str | None = None,
        request_id: str | None = None,
    ) -> Prepared:
        """Resolve the model and read the entity rows (join keys, plus any request-time values)."""
        loaded = self.get(ref, version=version, alias=alias)
        shadow = False
        if self._shadow is not None:
            _, pinned, alias = parse_model_ref(ref, version, alias)
            shadow = pinned is None and alias in (None, "production")
        return Prepared(loaded, _rows(entity_rows), request_id or uuid.uuid4().hex, shadow)

    def finish(
        self, prepared: Prepared, response: Any, return_features: bool = False, probabilities: bool = False
    ) -> dict[str, Any]:
        """From the lookup's response to predictions: assemble, apply the policy, predict, log."""
        loaded, rows = prepared.loaded, prepared.rows
        mv = loaded.version
        values, statuses = _columns(response)
        columns, missing = self._assemble(loaded, rows, values, statuses)
        X = model_input(columns, mv.columns, len(rows), loaded.frame_columns if loaded.use_frame else None)
        try:
            raw = loaded.model.predict(X)
        except Exception as e:
            raise PredictionFailed(f"model {mv.ref} failed on this input: {type(e).__name__}: {e}") from e
        predictions = one_per_row(raw, mv, "predictions", len(rows))
        out: dict[str, Any] = {
            "model": mv.name,
            "version": mv.version,
            "request_id": prepared.request_id,
            "predictions": predictions,
        }
        if probabilities:
            proba = getattr(loaded.model, "predict_proba", None)
            if proba is None:
                raise RetrievalError(f"model {mv.ref} has no predict_proba: it gives no probabilities")
            try:
                raw = proba(X)
            except Exception as e:
                raise PredictionFailed(f"model {mv.ref} failed on this input: {type(e).__name__}: {e}") from e
            out["probabilities"] = one_per_row(raw, mv, "probabilities", len(rows))
        if return_features:
            out["features"] = columns
            out["missing"] = missing
        if self.log is not None:
            now = self._log(prepared, columns, missing, predictions)
            if prepared.shadow and self._shadow is not None:
                self._shadow.offer(prepared, columns, missing, now)
        return out

    def predict(
        self,
        ref: str,
        entity_rows: Any,
        version: int | None = None,
        alias: str | None = None,
        return_features: bool = False,
        probabilities: bool = False,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Predict for entity rows (dicts of join keys, plus any request-time values the model takes).

        Returns {"model", "version", "request_id", "predictions"[, "probabilities"][, "features",
        "missing"]}; raises MissingFeatureError, UnknownNameError, RetrievalError on bad input, and
        ModelOutputError when the model does not answer one prediction per row.
        """
        prepared = self.prepare(ref, entity_rows, version=version, alias=alias, request_id=request_id)
        response = self._lookup(prepared)
        return self.finish(prepared, response, return_features=return_features, probabilities=probabilities)

    async def predict_async(
        self,
        ref: str,
        entity_rows: Any,
        version: int | None = None,
        alias: str | None = None,
        return_features: bool = False,
        probabilities: bool = False,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """`predict` for an event loop: the lookup is awaited; large batches predict in a worker thread."""
        if self.cached(ref, version, alias) is None:  # first use: resolve and load off the event loop
            import anyio.to_thread

            await anyio.to_thread.run_sync(lambda: self.get(ref, version=version, alias=alias))
        prepared = self.prepare(ref, entity_rows, version=version, alias=alias, request_id=request_id)
        mv = prepared.loaded.version
        if mv.feature_refs:
            response = await self.store.get_online_features_async(
                mv.feature_refs, prepared.rows, full_feature_names=mv.full_feature_names
            )
        else:
            response = None
        if len(prepared.rows) > 256:
            import anyio.to_thread

            return await anyio.to_thread.run_sync(
                lambda: self.finish(prepared, response, return_features, probabilities)
            )
        return self.finish(prepared, response, return_features=return_features, probabilities=probabilities)

    def _lookup(self, prepared: Prepared) -> Any:
        mv = prepared.loaded.version
        if not mv.feature_refs:
            return None
        return self.store.get_online_features(
            mv.feature_refs, prepared.rows, full_feature_names=mv.full_feature_names
        )

    @staticmethod
    def _assemble(
        loaded: LoadedModel,
        rows: list[dict[str, Any]],
        values: dict[str, list[Any]],
        statuses: dict[str, list[str]],
    ) -> tuple[dict[str, list[Any]], list[list[str]]]:
        mv = loaded.version
        policy = mv.missing_policy
        mode, defaults = policy.get("mode", "fail"), policy.get("defaults", {})
        n = len(rows)
        columns: dict[str, list[Any]] = {}
        missing: list[list[str]] = [[] for _ in range(n)]
        for inp in mv.inputs:
            if inp.ref is None:
                try:
                    columns[inp.name] = [row[inp.name] for row in rows]
                except KeyError:
                    i = next(i for i, row in enumerate(rows) if inp.name not in row)
                    raise RetrievalError(
                        f"entity row {i} lacks '{inp.name}': model {mv.ref} takes it as a request-time value "
                        "with each entity row"
                    ) from None
                continue
            col = list(values[inp.name])
            status = statuses.get(inp.name)
            if status is not None:
                for i, s in enumerate(status):
                    if s == PRESENT:
                        continue
                    if mode == "null":
                        col[i] = None
                    elif inp.name in defaults:
                        col[i] = defaults[inp.name]
                    else:
                        raise MissingFeatureError(
                            f"model {mv.ref} needs feature '{inp.name}' ({inp.ref}) and entity row {i} "
                            f"{loaded_keys(loaded, rows[i])} has none: {s}. Its missing_policy is "
                            f"{'fail' if mode == 'fail' else 'defaults without this feature'}; materialize or "
                            "push the feature, or register the model with missing_policy='null' or a default"
                        )
                    missing[i].append(inp.name)
            columns[inp.name] = col
        return columns, missing

    def _log(
        self,
        prepared: Prepared,
        columns: dict[str, list[Any]],
        missing: list[list[str]],
        predictions: list[Any],
    ) -> datetime:
        mv = prepared.loaded.version
        now = datetime.now(timezone.utc)
        keys = prepared.loaded.join_keys
        extra = prepared.loaded.request_fields
        names = list(columns)
        out = []
        for i, row in enumerate(prepared.rows):
            entry: dict[str, Any] = {
                "request_id": prepared.request_id,
                "ts": now,
                "model": mv.name,
                "model_version": mv.version,
                "row": i,
                "variant": "primary",
            }
            for k in (*keys, *extra):
                entry[f"entity_{k}" if k in LOG_COLUMNS else k] = row.get(k)
            entry["features"] = {c: json_scalar(columns[c][i]) for c in names}
            entry["missing"] = missing[i]
            entry["prediction"] = predictions[i]
            out.append(entry)
        assert self.log is not None
        self.log.append(out)
        return now

    # -- lifecycle -----------------------------------------------------------------------------------

    def flush_shadow(self, timeout: float = 10.0) -> bool:
        """Wait until the shadow queue is scored and logged (buffered: `log.flush()` writes it);
        False if it is not done within `timeout` seconds. True at once when nothing shadows."""
        return self._shadow.flush(timeout) if self._shadow is not None else True

    def close(self) -> None:
        """Stop watching, score what the shadow queue holds (at most `shadow.DRAIN_SECONDS`: a hung
        challenger's rows are dropped and counted), flush and stop the prediction log."""
        self._closed.set()
        self.models.unsubscribe(self._listener)
        if self._shadow is not None:
            self._shadow.close()
        if self.log is not None:
            self.log.close()

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def loaded_keys(loaded: LoadedModel, row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in loaded.join_keys}


def _weak_listener(server: ModelServer) -> Any:
    ref = weakref.ref(server)

    def on_change(name: str) -> None:
        s = ref()
        if s is not None and any(n == name for n, _ in list(s._targets)):
            s.refresh()

    return on_change


def _watch(ref: Any, closed: threading.Event, interval: float) -> None:
    """Background: notice alias moves made by other processes (the registry's models generation)."""
    while not closed.wait(interval):
        server = ref()
        if server is None:
            return
        try:
            server._check_generation()
        except Exception as e:  # the registry file busy or gone for a moment: try again later
            log.warning("model watcher: %s", e)
        del server


def _rows(entity_rows: Any) -> list[dict[str, Any]]:
    """Rows as a list of dicts: from a list of dicts, or a dict of columns."""
    if isinstance(entity_rows, dict):
        lengths = {len(v) for v in entity_rows.values() if isinstance(v, (list, tuple))}
        if len(lengths) != 1 or not all(isinstance(v, (list, tuple)) for v in entity_rows.values()):
            raise RetrievalError('entity columns must be lists of the same length: {"driver_id": [1, 2]}')
        names = list(entity_rows)
        return [dict(zip(names, vals)) for vals in zip(*entity_rows.values())]
    if isinstance(entity_rows, (list, tuple)) and all(isinstance(r, dict) for r in entity_rows):
        if not entity_rows:
            raise RetrievalError("no entity rows: pass at least one row of join keys")
        return list(entity_rows)
    if hasattr(entity_rows, "to_dict") and hasattr(entity_rows, "columns"):  # a pandas DataFrame
        records: list[dict[str, Any]] = entity_rows.to_dict("records")
        return records
    raise RetrievalError('entity rows must be a list of dicts ([{"driver_id": 1}]) or a dict of columns')


def _columns(response: Any) -> tuple[dict[str, list[Any]], dict[str, list[str]]]:
    """The lookup response as (column -> values, feature -> statuses)."""
    if response is None:
        return {}, {}
    values = getattr(response, "feature_columns", None) or response.to_dict()
    statuses = getattr(response, "statuses", None)
    if callable(statuses):
        statuses = statuses()
    return values, dict(statuses or {})


def model_input(columns: dict[str, list[Any]], order: list[str], n: int, frame_columns: Any) -> Any:
    """The model's input: rows x columns in its order. Numeric inputs become float64 (None -> NaN);
    other values keep their Python types. Models fitted on a DataFrame get one with the same column
    names (built from one float matrix when it can: several times faster than column by column)."""
    import numpy as np

    data = [columns[c] for c in order]
    try:
        X = np.array(data, dtype=np.float64).T.reshape(n, len(order))
    except (TypeError, ValueError):
        X = None
    if frame_columns is not None:
        import pandas as pd

        if X is not None:
            return pd.DataFrame(X, columns=frame_columns)
        return pd.DataFrame(dict(zip(order, data)), columns=frame_columns)
    return X if X is not None else np.array(data, dtype=object).T.reshape(n, len(order))


def one_per_row(out: Any, mv: ModelVersion, what: str, n: int) -> list[Any]:
    """The model's answer as one JSON-able value per row; ModelOutputError when it is not that (the
    prediction log and the client would otherwise get values that belong to no row, or miss some)."""
    if hasattr(out, "tolist"):
        out = out.tolist()
    if isinstance(out, (str, bytes, dict)) or not hasattr(out, "__len__"):
        raise ModelOutputError(
            f"model {mv.ref} returned {type(out).__name__} {_short(out)} as its {what}, not one per row "
            f"({n} rows)"
        )
    if len(out) != n:
        raise ModelOutputError(f"model {mv.ref} returned {len(out)} {what} for {n} rows")
    return _plain(out)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _plain(out: Any) -> list[Any]:
    """Model output -> JSON-able Python values (numpy scalars and arrays unwrapped)."""
    if hasattr(out, "tolist"):
        out = out.tolist()
    return [json_scalar(v) for v in out] if isinstance(out, list) else list(out)


def json_scalar(v: Any) -> Any:
    """One value as plain JSON-able Python (numpy scalars unwrapped, NaN as None)."""
    if hasattr(v, "item") and not isinstance(v, (list, dict)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            return v
    if isinstance(v, float) and math.isnan(v):
        return None
    return v
