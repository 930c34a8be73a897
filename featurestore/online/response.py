"""The answer to an online lookup: values, a status and an event time per (row, feature).

    resp.to_dict()                                   # {"driver_id": [1001], "conv_rate": [0.42]}
    resp.to_dict(include_status=True, include_event_timestamps=True)
    resp.entity_columns, resp.feature_columns        # {column: [values]}
    resp.statuses, resp.event_timestamps             # {feature: [status or UTC datetime per row]}
    resp.to_arrow(); resp.to_pandas()

Statuses per value: `PRESENT`; `NOT_FOUND` (no row for the entity key, a null key, or a feature the
stored row was written without); `OUTSIDE_MAX_AGE` (the row's event time is older than the view's
ttl at read time: the value is null). A PRESENT value may itself be null (the feature was null).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..types import ValueType
from .encoding import from_micros

if TYPE_CHECKING:
    import pandas as pd

PRESENT = "PRESENT"
NOT_FOUND = "NOT_FOUND"
OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"
STATUSES = (PRESENT, NOT_FOUND, OUTSIDE_MAX_AGE)
STATUS_SUFFIX = "__status"
EVENT_TIMESTAMP_SUFFIX = "__event_timestamp"

# Per view of a response: (its feature columns, status per row, event time per row in us or None,
# statuses of single features that differ from their row's, or None).
Block = tuple[tuple[str, ...], list[str], list[Any], "dict[str, list[str]] | None"]


class OnlineResponse:
    """The answer to one online lookup: a value, a status and an event time per (row, feature).

    - `to_dict(include_status=False, include_event_timestamps=False)`: {column: [values]} with the
      entity join keys first, then the features in request order; with the flags, each feature
      `f` is followed by `f__status` and/or `f__event_timestamp`.
    - `values`, `statuses`, `event_timestamps`: the same as fields ({feature: [...]}).
    - `to_arrow()`, `to_pandas()` (same flags). pandas cannot tell null from NaN in float columns
      (both are NaN there); to_dict and to_arrow keep them apart. Integer columns stay integers
      (nullable Int64 in pandas).
    """

    __slots__ = ("entity_columns", "feature_columns", "_blocks", "_statuses", "_event_timestamps", "_dtypes")

    def __init__(
        self,
        entity_columns: dict[str, list[Any]],
        feature_columns: dict[str, list[Any]],
        blocks: list[Block],
        dtypes: dict[str, ValueType],
    ):
        self.entity_columns = entity_columns
        self.feature_columns = feature_columns
        self._blocks = blocks  # statuses and event times per view, shared by its features
        self._statuses: dict[str, list[str]] | None = None
        self._event_timestamps: dict[str, list[datetime | None]] | None = None
        self._dtypes = dtypes

    def __len__(self) -> int:
        for col in (*self.entity_columns.values(), *self.feature_columns.values()):
            return len(col)
        return 0

    def __repr__(self) -> str:
        return f"OnlineResponse({len(self)} rows, features={list(self.feature_columns)})"

    @property
    def feature_names(self) -> list[str]:
        return list(self.feature_columns)

    @property
    def values(self) -> dict[str, list[Any]]:
        """{column: values}: entity join keys, then features."""
        return {**self.entity_columns, **self.feature_columns}

    @property
    def statuses(self) -> dict[str, list[str]]:
        """{feature: PRESENT / NOT_FOUND / OUTSIDE_MAX_AGE per row}."""
        if self._statuses is None:
            out: dict[str, list[str]] = {}
            for names, row_status, _, overrides in self._blocks:
                for name in names:
                    out[name] = overrides.get(name, row_status) if overrides else row_status
            self._statuses = out
        return self._statuses

    @property
    def event_timestamps(self) -> dict[str, list[datetime | None]]:
        """{feature: event time of the stored row (UTC), or None when no row was found}."""
        if self._event_timestamps is None:
            out: dict[str, list[datetime | None]] = {}
            for names, _, row_ts, _ in self._blocks:
                converted = [None if t is None else from_micros(t) for t in row_ts]
                out.update(dict.fromkeys(names, converted))
            self._event_timestamps = out
        return self._event_timestamps

    def to_dict(
        self, include_status: bool = False, include_event_timestamps: bool = False
    ) -> dict[str, list[Any]]:
        """{column: [values]}: join keys, then each feature (optionally with its status and event time)."""
        if not (include_status or include_event_timestamps):
            return {**self.entity_columns, **self.feature_columns}
        out = dict(self.entity_columns)
        statuses = self.statuses
        stamps = self.event_timestamps if include_event_timestamps else {}
        for name, values in self.feature_columns.items():
            out[name] = values
            if include_status:
                out[name + STATUS_SUFFIX] = statuses[name]
            if include_event_timestamps:
                out[name + EVENT_TIMESTAMP_SUFFIX] = stamps[name]
        return out

    def to_arrow(self, include_status: bool = False, include_event_timestamps: bool = False) -> pa.Table:
        """The response as an Arrow table, features typed as their views declare them."""
        arrays = {}
        for name, values in self.to_dict(include_status, include_event_timestamps).items():
            dtype = self._dtypes.get(name)
            if dtype is not None:
                arrays[name] = pa.array(values, type=dtype.to_arrow())
            elif (
                name.endswith(EVENT_TIMESTAMP_SUFFIX) and name[: -len(EVENT_TIMESTAMP_SUFFIX)] in self._dtypes
            ):
                arrays[name] = pa.array(values, type=pa.timestamp("us", tz="UTC"))
            else:
                arrays[name] = pa.array(values)
        return pa.table(arrays)

    def to_pandas(self, include_status: bool = False, include_event_timestamps: bool = False) -> pd.DataFrame:
        """The response as a pandas DataFrame (integers as nullable Int32/Int64, booleans as boolean)."""
        import pandas as pd

        mapping = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
        frame: pd.DataFrame = self.to_arrow(include_status, include_event_timestamps).to_pandas(
            types_mapper=mapping.get
        )
        return frame
