"""The FeatureStore facade's public methods and properties say what they return (mypy checks the
rest in `make lint`): each names a real type of the library, never `Any`."""

from __future__ import annotations

import inspect
from functools import cached_property

from featurestore import FeatureStore

EXPECTED = {
    "registry": "Registry",
    "online_store": "OnlineStore",
    "offline_storage": "OfflineStorage",
    "models": "ModelRegistry",
    "training_sets": "TrainingSets",
    "monitor": "Monitor",
    "governance": "Governance",
    "pipelines": "Pipelines",
    "save_training_set": "TrainingSet",
    "load_repo": "Catalog",
    "catalog": "Catalog",
    "plan": "Plan",
    "apply": "Plan",
    "materialize": "MaterializeResult",
    "materialize_incremental": "MaterializeResult",
    "get_historical_features": "RetrievalJob",
    "get_online_features": "OnlineResponse",
    "get_online_features_async": "OnlineResponse",
    "start_online_lookup": "PendingLookup",
    "push": "int",
    "refresh": "None",
    "close": "None",
}


def _returns(member: object) -> str:
    if isinstance(member, cached_property):
        member = member.func
    elif isinstance(member, property):
        member = member.fget
    return str(inspect.signature(member).return_annotation)  # the annotation as written (postponed)


def test_every_public_member_has_its_real_return_type():
    public = {
        name: member
        for name, member in vars(FeatureStore).items()
        if not name.startswith("_") and (callable(member) or isinstance(member, (property, cached_property)))
    }
    assert set(public) == set(EXPECTED), "a new public member: add it here with its return type"
    assert {name: _returns(member) for name, member in public.items()} == EXPECTED
