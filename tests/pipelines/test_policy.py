"""The promotion policy: a candidate replaces the champion only when every rule holds, checked
against concrete cases and against a brute-force restatement of the rules on random metrics."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.pipelines.policy import decide


def policy(**overrides: Any) -> dict[str, Any]:
    base = {
        "metric": "accuracy",
        "greater_is_better": True,
        "min_improvement": 0.0,
        "min_relative_improvement": 0.0,
        "threshold": None,
        "guards": {},
        "approval": "auto",
        "alias": "production",
    }
    return {**base, **overrides}


def test_a_candidate_as_good_as_the_champion_passes_with_no_minimum():
    verdict = decide(policy(), {"accuracy": 0.75}, {"accuracy": 0.75})
    assert verdict.passed and verdict.failed == []


def test_a_worse_candidate_fails_and_says_by_how_much():
    verdict = decide(policy(), {"accuracy": 0.5}, {"accuracy": 0.75})
    assert not verdict.passed
    assert verdict.failed == ["accuracy 0.5 vs champion 0.75: improvement -0.25, at least 0 required"]


def test_min_improvement_is_inclusive():
    assert decide(policy(min_improvement=0.25), {"accuracy": 0.75}, {"accuracy": 0.5}).passed
    assert not decide(policy(min_improvement=0.5), {"accuracy": 0.75}, {"accuracy": 0.5}).passed


def test_lower_is_better_metrics_improve_downwards():
    p = policy(metric="mae", greater_is_better=False, min_improvement=0.25)
    assert decide(p, {"mae": 1.0}, {"mae": 1.25}).passed
    assert not decide(p, {"mae": 1.25}, {"mae": 1.0}).passed


def test_relative_improvement_is_a_share_of_the_champions_absolute_value():
    p = policy(metric="neg_mean_absolute_error", min_relative_improvement=0.5)
    assert decide(p, {"neg_mean_absolute_error": -1.0}, {"neg_mean_absolute_error": -2.0}).passed
    assert not decide(p, {"neg_mean_absolute_error": -1.5}, {"neg_mean_absolute_error": -2.0}).passed


def test_a_champion_at_zero_needs_any_positive_improvement_for_a_relative_minimum():
    p = policy(metric="r2", min_relative_improvement=0.1)
    assert decide(p, {"r2": 0.001}, {"r2": 0.0}).passed
    assert not decide(p, {"r2": 0.0}, {"r2": 0.0}).passed


def test_the_threshold_alone_decides_without_a_champion():
    assert decide(policy(threshold=0.75), {"accuracy": 0.75}, None).passed
    assert not decide(policy(threshold=0.8), {"accuracy": 0.75}, None).passed
    assert decide(policy(), {"accuracy": 0.1}, None).passed  # no threshold: the first version passes
    # guards compare with a champion: without one they do not apply
    assert decide(policy(guards={"roc_auc": 0.0}), {"accuracy": 0.1}, None).passed


def test_the_threshold_also_applies_with_a_champion():
    assert not decide(policy(threshold=0.9), {"accuracy": 0.8}, {"accuracy": 0.5}).passed


def test_guards_allow_a_bounded_worsening():
    p = policy(guards={"roc_auc": 0.25})
    assert decide(p, {"accuracy": 0.75, "roc_auc": 0.5}, {"accuracy": 0.5, "roc_auc": 0.75}).passed
    verdict = decide(p, {"accuracy": 0.75, "roc_auc": 0.25}, {"accuracy": 0.5, "roc_auc": 0.75})
    assert not verdict.passed
    assert verdict.failed == ["guard roc_auc 0.25 vs champion 0.75: at most 0.25 worse allowed"]


def test_a_missing_or_nan_metric_fails_with_the_reason():
    nan = float("nan")
    assert "missing or not a number" in decide(policy(), {"accuracy": nan}, {"accuracy": 0.5}).failed[0]
    assert "champion's accuracy" in decide(policy(), {"accuracy": 0.5}, {}).failed[0]
    assert not decide(policy(), {}, None).passed
    guard = decide(policy(guards={"roc_auc": 1.0}), {"accuracy": 0.5}, {"accuracy": 0.5, "roc_auc": 0.5})
    assert guard.failed == ["guard roc_auc: the candidate's value is missing or not a number"]


# -- the rules restated, by brute force ---------------------------------------------------------------

VALUES = st.sampled_from([-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, float("nan"), None])


def _finite(v: Any) -> bool:
    return isinstance(v, float) and math.isfinite(v)


def oracle(p: dict[str, Any], cand: dict[str, Any], champ: dict[str, Any] | None) -> bool:
    """Every condition the policy states, listed and and-ed."""
    m = p["metric"]
    c = cand.get(m)
    if not _finite(c):
        return False
    sign = 1 if p["greater_is_better"] else -1
    conditions = []
    if p["threshold"] is not None:
        conditions.append(sign * c >= sign * p["threshold"])
    if champ is not None:
        h = champ.get(m)
        if not _finite(h):
            return False
        gain = sign * (c - h)
        conditions.append(gain >= p["min_improvement"])
        if p["min_relative_improvement"] > 0:
            conditions.append(gain > 0 if h == 0 else gain >= p["min_relative_improvement"] * abs(h))
        for g, allowed in p["guards"].items():
            cg, hg = cand.get(g), champ.get(g)
            conditions.append(_finite(cg) and _finite(hg) and cg + allowed >= hg)
    return all(conditions)


def metrics(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={n: VALUES for n in names})


@settings(max_examples=600, deadline=None)
@given(
    greater=st.booleans(),
    threshold=st.one_of(st.none(), st.sampled_from([0.0, 0.5, 0.75])),
    min_abs=st.sampled_from([0.0, 0.25, 0.5]),
    min_rel=st.sampled_from([0.0, 0.5, 1.0]),
    guards=st.dictionaries(st.sampled_from(["roc_auc", "f1"]), st.sampled_from([0.0, 0.25]), max_size=2),
    cand=metrics(["accuracy", "roc_auc", "f1"]),
    champ=st.one_of(st.none(), metrics(["accuracy", "roc_auc", "f1"])),
)
def test_decide_agrees_with_the_rules_restated(greater, threshold, min_abs, min_rel, guards, cand, champ):
    p = policy(
        greater_is_better=greater,
        threshold=threshold,
        min_improvement=min_abs,
        min_relative_improvement=min_rel,
        guards=guards,
    )
    verdict = decide(p, cand, champ)
    assert verdict.passed == oracle(p, cand, champ)
    assert verdict.passed == (not verdict.failed)
    assert set(verdict.failed) <= set(verdict.reasons)
