"""What a saved training set keeps for monitoring: the statistics of its columns (`stats`) and
the reference histograms drift compares served values with (`drift`)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa


def training_set_profiles(table: pa.Table, columns: list[str]) -> dict[str, Any]:
    """{"profile": statistics per column, "reference": drift reference per column} of `table`."""
    from .drift import reference_profile
    from .stats import profile_table

    return {
        "profile": profile_table(table, columns, of="training_set"),
        "reference": reference_profile(table, columns),
    }
