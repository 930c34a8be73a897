"""The monitoring report: one self-contained HTML file per model version (`fs monitor report`).

    store.monitor.report("trip_completion@production", "report.html", start="2026-11-24")

It is built from the monitoring reports (drift, drift per day, live performance, freshness, and the
shadow comparison when the version is the production or challenger of a model with both): their
bins, shares and per-day figures, never the logged rows, so its size depends on the number of
features, bins and days only. Plots are inline SVG (`svg`), styles inline CSS, and nothing is
loaded from anywhere: the file opens offline, from a mail attachment or a CI artifact.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Thresholds
from ..errors import MonitoringError
from . import formats, svg

if TYPE_CHECKING:
    from ..models.registry import ModelVersion
    from . import Monitor, Window
    from .drift import DailyDrift, DriftReport, FeatureDrift
    from .freshness import FreshnessReport
    from .performance import PerformanceReport
    from .shadow import ShadowReport

TEMPLATE = "report.html.j2"  # beside this module
DAILY_SERIES = 5  # the drift-per-day chart draws the prediction and the features of highest PSI


def write_report(monitor: Monitor, mv: ModelVersion, out: Path, window: Window) -> Path:
    """Write the HTML report of model version `mv` over `window` to `out`; returns `out`."""
    from .drift import drift_with_days
    from .freshness import freshness
    from .performance import performance

    report, daily = drift_with_days(monitor, mv, window)
    live = performance(monitor, mv, window)
    fresh = freshness(monitor.store)
    html = render(
        mv,
        window,
        report,
        daily,
        live,
        fresh,
        thresholds=report.thresholds,
        shadow=_shadow(monitor, mv, window),
    )
    out = Path(out)
    _write_atomic(out, html)
    return out


def _shadow(monitor: Monitor, mv: ModelVersion, window: Window) -> ShadowReport | None:
    """The shadow comparison of `mv`'s model, if `mv` is its production or challenger version and
    the challenger logged shadow rows in the window; else None (the report has no Shadow section)."""
    from .shadow import challenger_of, shadow

    try:
        production, challenger = challenger_of(monitor, mv.name)
    except MonitoringError:  # no production or no challenger alias: nothing to compare
        return None
    if mv.version not in (production.version, challenger.version) or production.version == challenger.version:
        return None
    found = shadow(monitor, production, challenger, window)
    return found if found.shadow_rows else None


def _write_atomic(out: Path, text: str) -> None:
    """Write `text` to `out` through a temporary file in its folder and a rename, so a failed write
    (disk full, a file size limit) leaves the previous report whole and no partial file behind."""
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise MonitoringError(f"cannot write the report to {out}: {e.strerror or e}") from None


def render(
    mv: ModelVersion,
    window: Window,
    report: DriftReport,
    daily: list[DailyDrift],
    live: PerformanceReport,
    freshness: FreshnessReport,
    thresholds: Thresholds,
    now: datetime | None = None,
    shadow: ShadowReport | None = None,
) -> str:
    """The report's HTML text from the reports it shows."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent),  # report.html.j2, shipped as package data
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(formats.FILTERS)
    context = {
        "mv": mv,
        "alias": ", ".join(mv.aliases) or "no alias",
        "window": window_text(window),
        "generated": (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC"),
        "report": report,
        "thresholds": thresholds,
        "daily": daily,
        "live": live,
        "freshness": freshness,
        "shadow": shadow,
        "status_class": status_class,
        **figures(report, daily, live, thresholds, shadow),
    }
    return env.get_template(TEMPLATE).render(**context)


def figures(
    report: DriftReport,
    daily: list[DailyDrift],
    live: PerformanceReport | None,
    thresholds: Thresholds,
    shadow: ShadowReport | None = None,
) -> dict[str, Any]:
    """The drift rows in the order shown and the charts (SVG as Markup; None when there is nothing to
    draw), shared by this report and the web UI's monitoring page: rows, psi_chart, plots
    ([{name, svg}], one histogram per row), daily_chart, live_chart, shadow_chart."""
    rows = drift_rows(report)
    psi_rows = [(f.name, f.psi, f.status) for f in rows]
    return {
        "rows": rows,
        "psi_chart": _markup(svg.psi_bars(psi_rows, thresholds.psi_warn, thresholds.psi_drift))
        if rows
        else None,
        "plots": [
            {"name": f.name, "svg": _markup(svg.histogram(f.name, f.bins, f.ref, f.cur))} for f in rows
        ],
        "daily_chart": daily_chart(report, daily, thresholds),
        "live_chart": live_chart(live),
        "shadow_chart": shadow_chart(shadow),
    }


def drift_rows(report: DriftReport) -> list[FeatureDrift]:
    """As `fs monitor drift` prints them: the features by PSI (highest first), then the prediction."""
    features = sorted(report.features.values(), key=by_psi)
    return [*features, *([report.prediction] if report.prediction is not None else [])]


def _markup(text: str) -> Any:
    from markupsafe import Markup

    return Markup(text)  # our svg functions escape every piece of text they draw


def daily_chart(report: DriftReport, daily: list[DailyDrift], thresholds: Thresholds) -> Any:
    if not daily:
        return None
    names = [f.name for f in sorted(report.features.values(), key=by_psi)][:DAILY_SERIES]
    series = {name: [d.psi.get(name) for d in daily] for name in names}
    if report.prediction is not None:  # the output's own field: an input may be named "prediction"
        label = "prediction" if "prediction" not in series else "prediction (model output)"
        series = {label: [d.prediction_psi for d in daily], **series}
    return _markup(
        svg.line_chart(
            "PSI per day (the prediction and the features of highest PSI)",
            [d.day.isoformat() for d in daily],
            series,
            refs=[("warn", thresholds.psi_warn), ("drift", thresholds.psi_drift)],
            y_label="PSI",
        )
    )


def live_chart(live: PerformanceReport | None) -> Any:
    if live is None or not live.days or live.metric is None:
        return None
    refs = [("validation", live.validation)] if live.validation is not None else []
    return _markup(
        svg.line_chart(
            f"Live {live.metric} per day against the validation value",
            [d.day.isoformat() for d in live.days],
            {live.metric: [d.value for d in live.days]},
            refs=refs,
            y_label=live.metric,
            from_zero=False,
        )
    )


def shadow_chart(shadow: ShadowReport | None) -> Any:
    """Both versions' live metric per day, when labels were fed back for the compared rows."""
    if shadow is None or shadow.metric is None or not any(d.labelled for d in shadow.days):
        return None
    return _markup(
        svg.line_chart(
            f"Live {shadow.metric} per day: production v{shadow.production}, challenger v{shadow.challenger}",
            [d.day.isoformat() for d in shadow.days],
            {
                f"production v{shadow.production}": [d.production_live for d in shadow.days],
                f"challenger v{shadow.challenger}": [d.challenger_live for d in shadow.days],
            },
            y_label=shadow.metric,
            from_zero=False,
        )
    )


def by_psi(f: FeatureDrift) -> tuple[int, float, str]:
    """Highest PSI first; features without one (insufficient data) last."""
    if f.psi is None or not math.isfinite(f.psi):
        return (1, 0.0, f.name)
    return (0, -f.psi, f.name)


def window_text(window: Window) -> str:
    def t(value: datetime | None, open_text: str) -> str:
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if value else open_text

    if window.start is None and window.end is None:
        return "everything logged"
    return f"{t(window.start, 'the first prediction')} to {t(window.end, 'now')}"


def status_class(status: str | None) -> str:
    return f"status-{status or 'none'}"
