"""The time split of a run's training set, against a brute force over every cut: rows at one
timestamp never straddle it, both sides hold rows whenever two timestamps exist, and the validation
share is as near the pipeline's `split` as any cut between two timestamps can make it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.pipelines.runner import cut_index, split


def brute_force_cuts(times: list[int]) -> list[int]:
    """Every first validation row that keeps each timestamp on one side and both sides non-empty."""
    return [i for i in range(1, len(times)) if times[i - 1] != times[i]]


@settings(max_examples=500, deadline=None)
@given(
    times=st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=60).map(sorted),
    share=st.floats(min_value=0.01, max_value=0.99),
)
def test_the_cut_is_the_nearest_edge_between_two_timestamps(times, share):
    n = len(times)
    cut = cut_index(pa.array(times, pa.int64()), share)
    cuts = brute_force_cuts(times)
    if not cuts:  # one timestamp: nothing can split it, every row validates (and split() refuses)
        assert cut == 0
        return
    assert cut in cuts  # no timestamp on both sides, neither side empty
    best = min(abs((n - i) / n - share) for i in cuts)
    assert abs((n - cut) / n - share) <= best + 1e-12


def test_a_small_boundary_group_goes_to_the_side_nearest_the_share():
    # ten rows, nine at the first time and one later: 20% validation is best met by the one later row;
    # the old rule put the whole boundary group into validation and trained on nothing
    times = [0] * 9 + [1]
    assert cut_index(pa.array(times, pa.int64()), 0.2) == 9
    # a group of three where half the rows begin: in validation it would make 60%, in training 45%
    times = [0] * 8 + [1] * 3 + [2] * 9
    assert cut_index(pa.array(times, pa.int64()), 0.5) == 11


def test_split_keeps_the_boundary_timestamp_on_one_side():
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    stamps = [start] * 4 + [start + timedelta(hours=1)] * 4 + [start + timedelta(hours=2)] * 2
    table = pa.table(
        {
            "driver_id": pa.array(range(10), pa.int64()),
            "event_timestamp": pa.array(stamps, pa.timestamp("us", tz="UTC")),
            "x": pa.array([float(i) for i in range(10)]),
            "y": pa.array([0, 1] * 5, pa.int64()),
        }
    )
    data = split(table, ["driver_id", "event_timestamp"], "y", 0.3, ["accuracy"])
    # the newest 30% begins inside the four rows at 01:00: 20% validates, nearer 30% than 60%
    assert (data.train.num_rows, data.valid.num_rows) == (8, 2)
    assert data.split_at == start + timedelta(hours=2)
