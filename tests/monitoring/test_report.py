"""The HTML monitoring report: one self-contained file (inline SVG, no network), a plot per column,
built from statistics so its size does not grow with the logged rows, and it renders in Chromium."""

from __future__ import annotations

import errno
import re
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from featurestore import FeatureStore, MonitoringError
from featurestore.cli import cli
from featurestore.monitoring import svg
from tests.browser import open_page
from tests.monitoring.scenario import FEATURES, label_of, served_scenario
from tests.repo_builder import make_repo

SVG_NS = "{http://www.w3.org/2000/svg}"


class Page(HTMLParser):
    """The parts of the report the tests look at: figures (class, caption, svg count), links, scripts."""

    def __init__(self, html: str):
        super().__init__()
        self.figures: list[dict] = []
        self.external: list[str] = []
        self.scripts = 0
        self.svgs = 0
        self._caption = False
        self.table_rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href", "xlink:href", "data"):
            if a.get(key) and re.match(r"\s*(https?:)?//", a[key]):
                self.external.append(f"<{tag} {key}={a[key]}>")
        if tag == "script":
            self.scripts += 1
        if tag == "svg":
            self.svgs += 1
            if self.figures:
                self.figures[-1]["svgs"] += 1
        if tag == "figure":
            self.figures.append({"class": a.get("class", ""), "caption": "", "svgs": 0})
        if tag == "figcaption":
            self._caption = True
        if tag == "tr":
            self.table_rows.append([])
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "figcaption":
            self._caption = False
        if tag in ("td", "th") and self._cell is not None:
            self.table_rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._caption:
            self.figures[-1]["caption"] += data
        if self._cell is not None:
            self._cell.append(data)

    def histograms(self) -> list[str]:
        return [f["caption"] for f in self.figures if "histogram" in f["class"].split() and f["svgs"] == 1]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """Served, shifted (conv_rate + 0.3: a drift) and served again; labels fed back for half the rows."""
    sc = served_scenario(tmp_path_factory.mktemp("report"))
    sc.serve(1000)
    sc.shift("conv_rate", 0.3)
    sc.serve(1000, seed=1)
    log = sc.log().to_pylist()
    fed = [
        {
            "request_id": r["request_id"],
            "row": r["row"],
            "label": float(
                label_of([r["features"]["conv_rate"]], [r["features"]["acc_rate"]], [r["features"]["trips"]])[
                    0
                ]
            ),
        }
        for r in log[::2]
    ]
    sc.store.monitor.log_feedback(fed, model=sc.model)
    yield sc
    sc.close()


@pytest.fixture(scope="module")
def report_file(scenario, tmp_path_factory) -> Path:
    return scenario.store.monitor.report(scenario.ref, tmp_path_factory.mktemp("out") / "report.html")


def test_the_report_has_a_histogram_per_feature_and_for_the_prediction(scenario, report_file):
    page = Page(report_file.read_text())
    assert sorted(page.histograms()) == sorted([*FEATURES, "prediction"])
    kinds = {c for f in page.figures for c in f["class"].split()}
    assert {"psi", "daily", "live"} <= kinds  # PSI per feature, drift per day, live metric per day


def test_the_drift_table_shows_the_reports_figures_highest_psi_first_then_the_prediction(
    scenario, report_file
):
    """Oracle: the DriftReport the monitor computes for the same window."""
    report = scenario.store.monitor.drift(scenario.ref)
    page = Page(report_file.read_text())
    header = next(i for i, r in enumerate(page.table_rows) if r[:3] == ["column", "kind", "status"])
    body = page.table_rows[header + 1 : header + 1 + len(FEATURES) + 1]
    expected = [*sorted(report.features.values(), key=lambda f: -f.psi), report.prediction]
    assert [r[0] for r in body] == [f.name for f in expected]
    for row, f in zip(body, expected):
        assert row[2] == f.status
        assert float(row[3]) == pytest.approx(f.psi, abs=5e-4)
        assert int(row[9].replace(",", "")) == f.n_cur
    assert body[0][0] == "conv_rate" and body[0][2] == "drift"


def test_the_report_is_self_contained(report_file):
    html = report_file.read_text()
    page = Page(html)
    assert page.external == []
    assert page.scripts == 0
    assert "<link" not in html and "@import" not in html and "url(" not in html


def test_the_report_renders_in_chromium_offline(scenario, report_file, tmp_path):
    page_info = Page(report_file.read_text())
    with open_page() as (page, log):
        page.goto(report_file.as_uri())
        page.wait_for_load_state("load")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        drawn = page.locator("svg").count()
        visible = page.evaluate(
            "() => [...document.querySelectorAll('svg')].filter(s => s.getBoundingClientRect().width > 50).length"
        )
    assert log.errors == []
    assert log.foreign_requests == []
    assert drawn == page_info.svgs == len(FEATURES) + 1 + 3  # histograms, PSI, drift per day, live metric
    assert visible == drawn
    assert shot.stat().st_size > 10_000


def test_fs_monitor_report_writes_the_file(scenario, tmp_path):
    out = tmp_path / "cli" / "report.html"
    result = CliRunner().invoke(
        cli,
        ["--repo", str(scenario.root), "monitor", "report", scenario.ref, "--out", str(out), "--since", "1d"],
    )
    assert result.exit_code == 0, result.output
    assert out.exists() and str(out) in result.output
    assert sorted(Page(out.read_text()).histograms()) == sorted([*FEATURES, "prediction"])

    bad = CliRunner().invoke(
        cli,
        ["--repo", str(scenario.root), "monitor", "report", "no_such_model@production", "--out", str(out)],
    )
    assert bad.exit_code == 2 and "no_such_model" in bad.output  # an error, not a breach


def test_a_window_with_nothing_logged_gives_a_report_that_says_so(scenario, tmp_path):
    out = scenario.store.monitor.report(
        scenario.ref, tmp_path / "empty.html", start="2000-01-01", end="2000-01-02"
    )
    html = out.read_text()
    page = Page(html)
    assert sorted(page.histograms()) == sorted([*FEATURES, "prediction"])
    header = next(i for i, r in enumerate(page.table_rows) if r[:3] == ["column", "kind", "status"])
    statuses = {r[2] for r in page.table_rows[header + 1 : header + 2 + len(FEATURES)]}
    assert statuses == {"insufficient"}
    assert "No predictions logged in the window." in html
    assert "2000-01-01 00:00 UTC to 2000-01-02 00:00 UTC" in html


def test_a_report_that_cannot_be_written_is_an_error_naming_the_file(scenario, tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(MonitoringError, match=r"cannot write the report to .*a_file/report\.html"):
        scenario.store.monitor.report(scenario.ref, tmp_path / "a_file" / "report.html")


def test_a_failed_write_leaves_the_previous_report_whole(scenario, tmp_path, monkeypatch):
    out = tmp_path / "report.html"
    scenario.store.monitor.report(scenario.ref, out)
    before = out.read_bytes()
    real_write = Path.write_text

    def disk_full(self, data, *args, **kwargs):  # half written, then the disk is full
        real_write(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(
        MonitoringError, match=rf"cannot write the report to {re.escape(str(out))}: No space left"
    ):
        scenario.store.monitor.report(scenario.ref, out)
    monkeypatch.undo()
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left behind


# -- the charts -------------------------------------------------------------------------------------


def _parse(text: str) -> ET.Element:
    root = ET.fromstring(text)  # well-formed XML, or this raises
    assert root.tag == f"{SVG_NS}svg"
    assert root.find(f"{SVG_NS}title") is not None and root.find(f"{SVG_NS}title").text
    return root


def test_charts_are_well_formed_svg_with_their_text_escaped():
    name = '<script>alert("x")</script> & co'
    charts = [
        svg.histogram(name, ["(-inf, 0.1]", "<b>", "null"], [0.2, 0.5, 0.3], [0.1, 0.6, 0.3]),
        svg.psi_bars([(name, 0.3, "drift"), ("b", None, "insufficient"), ("c", 9.0, "drift")], 0.1, 0.25),
        svg.line_chart(
            name, ["2026-11-01", "2026-11-02"], {name: [0.1, None], "p": [0.2, 0.3]}, [("drift", 0.25)]
        ),
    ]
    for chart in charts:
        root = _parse(chart)
        texts = " ".join(t.text or "" for t in root.iter() if t.tag in (f"{SVG_NS}text", f"{SVG_NS}title"))
        assert "<script>" not in chart
        assert ("<script>" in texts) or ("<b>" in texts)  # drawn as written, after unescaping


def test_a_histogram_bar_height_is_its_share():
    root = _parse(svg.histogram("x", ["a", "b"], [0.25, 0.75], [0.5, 0.5]))
    heights = [
        float(r.get("height")) for r in root.iter(f"{SVG_NS}rect") if r.find(f"{SVG_NS}title") is not None
    ]
    ref_a, cur_a, ref_b, cur_b = heights
    assert ref_b == pytest.approx(3 * ref_a, rel=0.02)
    assert cur_a == pytest.approx(cur_b)
    assert ref_b > cur_b


def test_a_histogram_refuses_shares_that_do_not_match_its_bins():
    with pytest.raises(ValueError, match="'x': 2 bins but 1 / 2 shares"):
        svg.histogram("x", ["a", "b"], [1.0], [0.5, 0.5])


# -- size: statistics, not rows ---------------------------------------------------------------------

WIDE = 50


def _wide_repo(root: Path) -> FeatureStore:
    """A model of 50 features over one view, registered with a 2,000-row training set."""
    names = [f"f{i:02d}" for i in range(WIDE)]
    fields = ", ".join(f'Field("{n}", Float64)' for n in names)
    definitions = f"""
from datetime import timedelta
from featurestore import Entity, FeatureService, FeatureView, Field, Float64, Int64, ParquetSource

driver = Entity(name="driver", join_keys=["driver_id"])
wide = FeatureView(name="wide", entities=[driver], ttl=timedelta(days=30),
                   source=ParquetSource(name="wide_source", path="data/wide.parquet", timestamp_field="event_timestamp"),
                   schema=[{fields}])
wide_service = FeatureService(name="wide_service", features=[wide])
"""
    rng = np.random.default_rng(3)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    drivers = 2000
    data = {
        "driver_id": pa.array(np.arange(1, drivers + 1), pa.int64()),
        "event_timestamp": pa.array([now - timedelta(days=2)] * drivers, pa.timestamp("us", tz="UTC")),
    }
    data.update({n: pa.array(rng.normal(i, 1 + i / 10, drivers)) for i, n in enumerate(names)})
    make_repo(root, {"features.py": definitions}, {"data/wide.parquet": pa.table(data)})
    store = FeatureStore(root)
    store.apply()
    entity_df = pa.table(
        {
            "driver_id": data["driver_id"],
            "event_timestamp": pa.array([now - timedelta(days=1)] * drivers, pa.timestamp("us", tz="UTC")),
        }
    )
    job = store.get_historical_features(entity_df, features="wide_service")
    job.save("wide_train")
    from sklearn.linear_model import LinearRegression

    frame = job.to_pandas()
    model = LinearRegression().fit(frame[names], frame[names].sum(axis=1))
    mv = store.models.register("wide", model, feature_service="wide_service", training_set="wide_train")
    store.models.set_alias("wide", "production", mv.version)
    return store


def _write_log(store: FeatureStore, rows: int, chunk: int = 100_000) -> None:
    """`rows` predictions of wide v1 in the prediction log's layout (PredictionLog._write), over 3 days."""
    rng = np.random.default_rng(rows)
    names = [f"f{i:02d}" for i in range(WIDE)]
    now = datetime.now(timezone.utc)
    root = Path(store.config.monitor.log_path) / "wide"
    for part, start in enumerate(range(0, rows, chunk)):
        n = min(chunk, rows - start)
        day = now - timedelta(days=part % 3)
        values = [pa.array(rng.normal(i, 1 + i / 10, n)) for i in range(WIDE)]
        table = pa.table(
            {
                "request_id": pa.array([f"r{part}"] * n),
                "ts": pa.array([day] * n, pa.timestamp("us", tz="UTC")),
                "model": pa.array(["wide"] * n),
                "model_version": pa.array(np.ones(n, dtype=np.int64)),
                "row": pa.array(np.arange(n, dtype=np.int64)),
                "driver_id": pa.array(rng.integers(1, 2001, n)),
                "features": pa.StructArray.from_arrays(values, names=names),
                "missing": pa.array([[]] * n, pa.list_(pa.string())),
                "prediction": pc.add(values[0], values[1]),
            }
        )
        folder = root / f"date={day.date().isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"part-v1-{part:04d}-{uuid.uuid4().hex[:8]}.parquet")


@pytest.mark.slow
def test_the_report_size_does_not_grow_with_the_logged_rows(tmp_path):
    sizes = {}
    for rows in (1_000, 1_000_000):
        store = _wide_repo(tmp_path / str(rows))
        try:
            _write_log(store, rows, chunk=rows // 10)
            out = store.monitor.report("wide@production", tmp_path / f"report-{rows}.html")
            assert len(Page(out.read_text()).histograms()) == WIDE + 1
            sizes[rows] = out.stat().st_size
        finally:
            store.close()
    small, large = sizes[1_000], sizes[1_000_000]
    assert abs(large - small) <= 0.1 * small, sizes
    assert large < 1_000_000, sizes
