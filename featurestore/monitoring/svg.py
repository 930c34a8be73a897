"""Inline SVG charts for the monitoring report: plain strings, no script, no external asset.

    histogram("conv_rate", bins, ref, cur)               # reference vs current share per bin
    distribution("conv_rate", bins, shares)              # one series' share per bin
    psi_bars([("conv_rate", 0.31, "drift"), ...], 0.1, 0.25)  # PSI per feature, thresholds as lines
    line_chart("PSI per day", days, {"conv_rate": [...]}, refs=[("drift", 0.25)])

Each chart has a <title> (read by screen readers and shown as a tooltip) and text labels, and every
piece of text is escaped, so a feature named `<b>` is drawn as written. Sizes depend on the number
of bins, features and days only, never on the number of rows behind them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

REFERENCE = "#5b7fa6"  # the training set
CURRENT = "#e07b39"  # what was served
STATUS_COLOURS = {"ok": "#4c9a5b", "warn": "#d9a400", "drift": "#c8453b", "insufficient": "#9a9a9a"}
PALETTE = ("#e07b39", "#5b7fa6", "#4c9a5b", "#8e5ba6", "#c8453b", "#3a9aa6", "#a6803a", "#666666")
FONT = 'font-family="system-ui, sans-serif"'


def _n(x: float) -> str:
    """A coordinate, short: one decimal at most."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _svg(width: float, height: float, title: str, body: list[str]) -> str:
    t = escape(title)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{t}" width="{_n(width)}" '
        f'height="{_n(height)}" viewBox="0 0 {_n(width)} {_n(height)}" {FONT} font-size="11">'
        f"<title>{t}</title>{''.join(body)}</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}"{extra}>{escape(text)}</text>'


def _legend(x: float, y: float, items: Sequence[tuple[str, str]]) -> list[str]:
    out = []
    for label, colour in items:
        out.append(f'<rect x="{_n(x)}" y="{_n(y - 8)}" width="10" height="10" fill="{colour}"/>')
        out.append(_text(x + 14, y + 1, label))
        x += 24 + 6.5 * len(label)
    return out


def _short(label: str, limit: int = 16) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def histogram(name: str, bins: Sequence[str], ref: Sequence[float], cur: Sequence[float]) -> str:
    """Reference and current share of rows per bin, side by side, with the bins' labels under them."""
    if not (len(bins) == len(ref) == len(cur)):
        raise ValueError(f"histogram {name!r}: {len(bins)} bins but {len(ref)} / {len(cur)} shares")
    k = max(len(bins), 1)
    slot = max(22.0, min(40.0, 440.0 / k))
    left, top, plot_h, label_h = 40.0, 24.0, 120.0, 70.0
    width = left + slot * k + 10
    height = top + plot_h + label_h
    top_share = max([*ref, *cur, 0.0]) or 1.0
    top_share = math.ceil(top_share * 10) / 10 if top_share > 0.1 else top_share
    body = _legend(left, 12, [("training set", REFERENCE), ("served", CURRENT)])
    base = top + plot_h
    for frac in (0.0, 0.5, 1.0):
        y = base - plot_h * frac
        body.append(f'<line x1="{_n(left)}" y1="{_n(y)}" x2="{_n(width - 10)}" y2="{_n(y)}" stroke="#ddd"/>')
        body.append(_text(left - 4, y + 4, f"{top_share * frac:.0%}", "end"))
    bar = (slot - 6) / 2
    for i, (label, r, c) in enumerate(zip(bins, ref, cur)):
        x = left + i * slot + 3
        for j, (share, colour, who) in enumerate(((r, REFERENCE, "training set"), (c, CURRENT, "served"))):
            h = plot_h * (share / top_share)
            body.append(
                f'<rect x="{_n(x + j * bar)}" y="{_n(base - h)}" width="{_n(bar)}" height="{_n(h)}" '
                f'fill="{colour}"><title>{escape(f"{label}: {who} {share:.1%}")}</title></rect>'
            )
        cx, cy = x + bar, base + 10
        body.append(
            _text(cx, cy, _short(label), "end", f' transform="rotate(-40 {_n(cx)} {_n(cy)})" font-size="9"')
        )
    return _svg(width, height, f"{name}: share of rows per bin, training set vs served", body)


def distribution(name: str, bins: Sequence[str], shares: Sequence[float]) -> str:
    """One series' share of rows per bin (a feature's histogram on its view page), small."""
    if len(bins) != len(shares):
        raise ValueError(f"distribution {name!r}: {len(bins)} bins but {len(shares)} shares")
    k = max(len(bins), 1)
    slot = max(8.0, min(24.0, 320.0 / k))
    left, top, plot_h, label_h = 36.0, 8.0, 70.0, 18.0
    width = left + slot * k + 6
    base = top + plot_h
    top_share = max([*shares, 0.0]) or 1.0
    body = [f'<line x1="{_n(left)}" y1="{_n(base)}" x2="{_n(width - 6)}" y2="{_n(base)}" stroke="#ddd"/>']
    body.append(_text(left - 4, top + 8, f"{top_share:.0%}", "end"))
    body.append(_text(left - 4, base, "0%", "end"))
    for i, (label, share) in enumerate(zip(bins, shares)):
        h = plot_h * (share / top_share)
        body.append(
            f'<rect x="{_n(left + i * slot + 1)}" y="{_n(base - h)}" width="{_n(slot - 2)}" '
            f'height="{_n(h)}" fill="{REFERENCE}"><title>{escape(f"{label}: {share:.1%}")}</title></rect>'
        )
    if bins:
        body.append(_text(left, base + 13, _short(bins[0].split("–")[0])))
        body.append(_text(width - 6, base + 13, _short(bins[-1].split("–")[-1]), "end"))
    return _svg(width, top + plot_h + label_h, f"{name}: share of rows per bin", body)


def psi_bars(rows: Sequence[tuple[str, float | None, str]], warn: float, drift: float) -> str:
    """PSI per feature as horizontal bars coloured by status, with the warn and drift thresholds as
    vertical lines. A PSI beyond the scale (four times the drift threshold) is drawn to its end and
    labelled with its value."""
    left, right, row_h, top = 150.0, 70.0, 18.0, 22.0
    plot_w = 360.0
    known = [p for _, p, _ in rows if p is not None and math.isfinite(p)]
    scale = min(max([drift * 1.2, *known]), drift * 4)
    height = top + row_h * max(len(rows), 1) + 10
    width = left + plot_w + right
    body = []
    for i, (name, psi, status) in enumerate(rows):
        y = top + i * row_h
        body.append(_text(left - 6, y + 12, _short(name, 24), "end"))
        if psi is None or not math.isfinite(psi):
            body.append(_text(left + 4, y + 12, status, extra=' fill="#777"'))
            continue
        w = plot_w * min(psi, scale) / scale
        colour = STATUS_COLOURS.get(status, "#777")
        body.append(
            f'<rect x="{_n(left)}" y="{_n(y + 3)}" width="{_n(max(w, 1))}" height="{_n(row_h - 6)}" '
            f'fill="{colour}"><title>{escape(f"{name}: PSI {psi:.3f} ({status})")}</title></rect>'
        )
        body.append(_text(left + w + 4, y + 12, f"{psi:.3f}{' ▸' if psi > scale else ''}"))
    bottom = top + row_h * max(len(rows), 1)
    for value, label in ((warn, "warn"), (drift, "drift")):
        x = left + plot_w * value / scale
        body.append(
            f'<line x1="{_n(x)}" y1="{_n(top - 4)}" x2="{_n(x)}" y2="{_n(bottom)}" stroke="#333" '
            'stroke-dasharray="4 3"/>'
        )
        body.append(_text(x, top - 8, f"{label} {value:g}", "middle", ' font-size="10"'))
    return _svg(width, height, f"PSI per feature (warn at {warn:g}, drift at {drift:g})", body)


def line_chart(
    title: str,
    days: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    refs: Sequence[tuple[str, float]] = (),
    y_label: str = "",
    from_zero: bool = True,
) -> str:
    """One line per series over the days (a missing value breaks its line), with horizontal
    reference lines (thresholds, the validation metric) dashed and labelled. The y axis starts at 0
    when `from_zero` (PSI) and fits the values otherwise (a metric)."""
    left, right, plot_h, plot_w = 64.0, 110.0, 150.0, 440.0
    width = left + plot_w + right
    # the legend: one entry per series, wrapped into rows that fit the width
    legend: list[tuple[float, float, str, str]] = []
    x, y = left, 14.0
    for k, name in enumerate(series):
        label = _short(name, 20)
        step_x = 24 + 6.5 * len(label)
        if x > left and x + step_x > width:
            x, y = left, y + 16
        legend.append((x, y, label, PALETTE[k % len(PALETTE)]))
        x += step_x
    top = y + 14
    height = top + plot_h + 40
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    values += [v for _, v in refs if math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if from_zero:
        lo = min(lo, 0.0)
    if hi - lo < 1e-12:
        hi = lo + 1.0
    pad = (hi - lo) * 0.08
    lo, hi = (lo if lo == 0 else lo - pad), hi + pad

    def y_of(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    n = max(len(days), 1)
    step = plot_w / max(n - 1, 1)

    def x_of(i: int) -> float:
        return left + (i * step if n > 1 else plot_w / 2)

    body = []
    base = top + plot_h
    for frac in (0.0, 0.5, 1.0):
        v = lo + (hi - lo) * frac
        y = y_of(v)
        body.append(
            f'<line x1="{_n(left)}" y1="{_n(y)}" x2="{_n(left + plot_w)}" y2="{_n(y)}" stroke="#ddd"/>'
        )
        body.append(_text(left - 4, y + 4, f"{v:.3g}", "end"))
    if y_label:
        body.append(
            _text(
                12, top + plot_h / 2, y_label, "middle", f' transform="rotate(-90 12 {_n(top + plot_h / 2)})"'
            )
        )
    every = max(1, math.ceil(n / 8))  # at most eight day labels
    for i, day in enumerate(days):
        if i % every == 0:
            body.append(_text(x_of(i), base + 16, day, "middle", ' font-size="9"'))
    label_ys: list[float] = []  # labels of close lines are moved apart, the higher value on top
    for label, value in sorted(refs, key=lambda r: -r[1]):
        y = y_of(value)
        body.append(
            f'<line x1="{_n(left)}" y1="{_n(y)}" x2="{_n(left + plot_w)}" y2="{_n(y)}" stroke="#333" '
            'stroke-dasharray="4 3"/>'
        )
        text_y = max([y + 4, *[prev + 11 for prev in label_ys]])
        label_ys.append(text_y)
        body.append(_text(left + plot_w + 4, text_y, f"{label} {value:.3g}", extra=' font-size="10"'))
    for (legend_x, legend_y, label, colour), (name, vs) in zip(legend, series.items()):
        runs: list[list[str]] = [[]]
        for i, point in enumerate(vs):
            if point is None or not math.isfinite(point):
                runs.append([])
                continue
            runs[-1].append(f"{_n(x_of(i))},{_n(y_of(point))}")
            body.append(
                f'<circle cx="{_n(x_of(i))}" cy="{_n(y_of(point))}" r="2.5" fill="{colour}">'
                f"<title>{escape(f'{name} {days[i]}: {point:.4g}')}</title></circle>"
            )
        for run in runs:
            if len(run) > 1:
                body.append(
                    f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
                )
        body += _legend(legend_x, legend_y, [(label, colour)])
    return _svg(width, height, title, body)
