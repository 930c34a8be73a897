"""Row keys and row blobs (featurestore/online/encoding.py): unambiguous keys, lenient key types."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurestore import Array, ConfigError, Float64, Int64, String, UnixTimestamp
from featurestore.online.encoding import Layout, entity_text, key_part, namespace

KEY_VALUES = st.integers() | st.text()


@given(a=st.lists(KEY_VALUES, min_size=2, max_size=3), b=st.lists(KEY_VALUES, min_size=2, max_size=3))
def test_composite_keys_are_equal_only_when_every_part_is(a, b):
    same_parts = [key_part(x) for x in a] == [key_part(x) for x in b]
    assert (entity_text(a) == entity_text(b)) == same_parts


def test_one_key_however_it_is_spelled():
    spellings = [1001, "1001", 1001.0, np.int64(1001), np.int32(1001), np.float64(1001.0)]
    assert {key_part(v) for v in spellings} == {"1001"}
    assert key_part(1001.5) == "1001.5"
    assert key_part(None) is None and key_part(float("nan")) is None
    assert entity_text([1, None]) is None
    assert key_part(datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc)) == "1000000"
    assert key_part(datetime(1970, 1, 1, 0, 0, 1)) == "1000000"  # naive = UTC
    assert key_part(b"\x01\xff") == "01ff"


def test_a_key_prefix_must_not_contain_the_separator():
    assert namespace("rides") == b"rides:"
    for bad in ("", "team:rides"):
        with pytest.raises(ConfigError, match="key_prefix"):
            namespace(bad)


def test_layouts_round_trip_and_identify_names_and_types():
    layout = Layout.from_fields([("a", Int64), ("b", Array(UnixTimestamp)), ("c", String)])
    assert Layout.decode(layout.encoded) == layout
    assert Layout.from_fields([("a", Float64), ("b", Array(UnixTimestamp)), ("c", String)]).id != layout.id
    assert Layout.from_fields([("c", String), ("a", Int64), ("b", Array(UnixTimestamp))]).id != layout.id
