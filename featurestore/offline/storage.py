"""Offline storage: a view's feature rows as Parquet under `<offline path>/<view>/date=YYYY-MM-DD/`.

Rows have the shape of `featurestore.offline.features` (join keys, features, __event_ts,
__created_ts). Partitions are by UTC day of the event time.
"""

from __future__ import annotations

from pathlib import Path

from .sources import quote_literal


class OfflineStorage:
    """The Parquet files materialization writes and the point-in-time join reads."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def view_dir(self, view_name: str) -> Path:
        return self.root / view_name

    def files(self, view_name: str) -> list[Path]:
        return sorted(self.view_dir(view_name).glob("date=*/*.parquet"))

    def has_data(self, view_name: str) -> bool:
        return bool(self.files(view_name))

    def relation(self, view_name: str) -> str:
        """A SQL expression (usable after FROM) over all stored feature rows of the view."""
        pattern = str(self.view_dir(view_name) / "date=*" / "*.parquet")
        return f"read_parquet({quote_literal(pattern)}, hive_partitioning = false)"
