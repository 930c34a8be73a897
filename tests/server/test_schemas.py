"""The lookup body's quick check against pydantic, its oracle: whatever the check vouches for, pydantic
accepts, and builds the very same request."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from server.schemas import INT64_MAX, INT64_MIN, OnlineFeaturesRequest, _plain_lookup

# Mostly valid bodies with one odd part here and there: the check must refuse exactly the odd ones.
ints = st.one_of(st.integers(-5, 10**6), st.sampled_from([INT64_MIN - 1, INT64_MIN, INT64_MAX, INT64_MAX + 1]))
keys = st.one_of(ints, st.text(max_size=5), st.booleans(), st.none(), st.floats(allow_nan=False, allow_infinity=False))
key_lists = st.one_of(st.lists(ints, max_size=6), st.lists(st.text(max_size=5), max_size=6), st.lists(keys, max_size=6))
names = st.sampled_from(["driver_id", "origin", "x"])
columns = st.dictionaries(names, st.one_of(key_lists, key_lists, keys), max_size=3)
rows = st.one_of(st.lists(st.dictionaries(names, ints, max_size=2), max_size=6),
                 st.lists(st.one_of(st.dictionaries(names, keys, max_size=3), keys), max_size=6))
references = st.text(st.sampled_from("v:f_"), max_size=4)
features = st.one_of(st.lists(references, max_size=3), references, st.integers(), st.none(), st.lists(st.integers(), max_size=2))
flags = st.one_of(st.booleans(), st.booleans(), st.integers(0, 1), st.none())
bodies = st.fixed_dictionaries(
    {"features": features, "entities": st.one_of(columns, rows, keys)},
    optional={"full_feature_names": flags, "include_status": flags, "include_event_timestamps": flags,
              "extra": st.integers()},
) | st.fixed_dictionaries({}, optional={"features": features, "entities": columns})


@settings(max_examples=600, deadline=None)
@given(bodies)
def test_the_quick_check_vouches_only_for_what_pydantic_accepts_as_is(data):
    try:
        validated = OnlineFeaturesRequest.model_validate_json(json.dumps(data))
    except ValidationError:
        assert not _plain_lookup(data)
    else:
        if _plain_lookup(data):
            assert OnlineFeaturesRequest.model_construct(**data).model_dump() == validated.model_dump()


@pytest.mark.parametrize("data", [
    {"features": ["v:f"], "entities": {"driver_id": [1, 2, 3]}},
    {"features": "service", "entities": [{"driver_id": 1}, {"driver_id": 2}], "include_status": True},
    {"features": ["v:f"], "entities": {"origin": ["a"], "destination": ["b"]}, "full_feature_names": False},
    {"features": ["v:f"], "entities": []},
])
def test_the_usual_bodies_take_the_quick_road(data):
    assert _plain_lookup(data)


@pytest.mark.parametrize("data", [
    {"features": [], "entities": {"driver_id": [1]}},                     # no features
    {"features": ["v:f", ""], "entities": {"driver_id": [1]}},            # an empty reference
    {"features": ["v:f"], "entities": {"driver_id": [INT64_MAX + 1]}},    # not an int64
    {"features": ["v:f"], "entities": {"driver_id": [True]}},             # a boolean key (pydantic decides)
    {"features": ["v:f"], "entities": {"driver_id": 1}},                  # not a list
    {"features": ["v:f"], "entities": {"driver_id": [1]}, "include_status": 1},
    {"features": ["v:f"], "entities": {"driver_id": [1]}, "extra": 1},
    {"entities": {"driver_id": [1]}},
])
def test_anything_else_goes_to_pydantic(data):
    assert not _plain_lookup(data)
