"""The promotion decision: may a candidate replace the champion? Pure: metrics in, a verdict out.

    verdict = decide(pipeline.policy, {"accuracy": 0.91, "roc_auc": 0.95}, {"accuracy": 0.88, "roc_auc": 0.96})
    verdict.passed, verdict.reasons

The rules (the module docstring of `featurestore.pipelines.definition` states them for users):
the candidate's `metric` must meet `threshold` (when set); with a champion it must also be better
by at least `min_improvement` (`>=`: 0 means "not worse") and by at least
`min_relative_improvement` of the champion's absolute value (a champion at 0 with a relative
minimum above 0: any positive improvement); each guard metric (greater is better, as scikit-learn
scorers) must be no worse than the champion's by more than its allowance. A missing or NaN value
fails its check, with the reason: a promotion never goes ahead on a metric nobody computed.
Kept apart from the runner so it is checked on its own, against a brute-force restatement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """Whether the candidate passed, and one sentence per check (`failed`: the ones it did not pass)."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _value(metrics: Mapping[str, Any] | None, name: str) -> float | None:
    """A finite float, or None (missing, None, NaN, infinite or not a number)."""
    if metrics is None:
        return None
    value = metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _g(value: float) -> str:
    return f"{value:.6g}"


def decide(
    policy: Mapping[str, Any],
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
) -> Verdict:
    """Apply `policy` (as `TrainingPipeline.policy`) to the candidate's metrics and the champion's
    (None: there is no champion, only `threshold` applies)."""
    metric = str(policy["metric"])
    greater = bool(policy.get("greater_is_better", True))
    threshold = policy.get("threshold")
    min_abs = float(policy.get("min_improvement") or 0.0)
    min_rel = float(policy.get("min_relative_improvement") or 0.0)
    guards: Mapping[str, Any] = policy.get("guards") or {}
    reasons: list[str] = []
    failed: list[str] = []

    def check(ok: bool, sentence: str) -> None:
        reasons.append(sentence)
        if not ok:
            failed.append(sentence)

    cand = _value(candidate, metric)
    if cand is None:
        check(False, f"the candidate's {metric} is missing or not a number: it cannot be validated")
        return Verdict(False, reasons, failed)
    if threshold is not None:
        limit = float(threshold)
        ok = cand >= limit if greater else cand <= limit
        word = "at least" if greater else "at most"
        check(ok, f"{metric} {_g(cand)} {'meets' if ok else 'misses'} the threshold ({word} {_g(limit)})")
    if champion is None:
        if threshold is None:
            check(True, "no champion to compare with and no threshold: the candidate passes")
        return Verdict(not failed, reasons, failed)

    champ = _value(champion, metric)
    if champ is None:
        check(False, f"the champion's {metric} is missing or not a number: the two cannot be compared")
    else:
        gain = cand - champ if greater else champ - cand
        versus = f"{_g(cand)} vs champion {_g(champ)}"
        check(
            gain >= min_abs,
            f"{metric} {versus}: improvement {_g(gain)}, at least {_g(min_abs)} required",
        )
        if min_rel > 0:
            if champ == 0:
                check(
                    gain > 0,
                    f"{metric}: champion at 0, so any positive improvement is required; got {_g(gain)}",
                )
            else:
                needed = min_rel * abs(champ)
                check(
                    gain >= needed,
                    f"{metric}: improvement {_g(gain)}, at least {_g(min_rel)} x |{_g(champ)}| = "
                    f"{_g(needed)} required",
                )
    for name, allowed in guards.items():
        c, h = _value(candidate, name), _value(champion, name)
        if c is None or h is None:
            who = "candidate's" if c is None else "champion's"
            check(False, f"guard {name}: the {who} value is missing or not a number")
            continue
        floor = h - float(allowed)
        check(
            c >= floor,
            f"guard {name} {_g(c)} vs champion {_g(h)}: at most {_g(float(allowed))} worse allowed",
        )
    return Verdict(not failed, reasons, failed)
