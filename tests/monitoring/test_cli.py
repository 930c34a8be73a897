"""`fs stats` and `fs monitor ...` from a shell: values and names from the data are printed as they
are (never read as rich markup), and a --since too long for a date is bad input (exit 2)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from click.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import cli
from tests.monitoring.scenario import served_scenario
from tests.repo_builder import make_repo

HOSTILE = ["[/]", "[bold red]boom", "back\\", "[link=http://x]y[/link]"]

DEFS = """
from datetime import timedelta
from featurestore import *
driver = Entity(name="driver", join_keys=["driver_id"])
src = ParquetSource(name="trips", path="data/trips.parquet")
driver_stats = FeatureView(name="driver_stats", entities=[driver], source=src, ttl=timedelta(days=2),
    schema=[Field("city", String), Field("rating", Float64)])
"""


def fs(root, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["--repo", str(root), *args], env={"COLUMNS": "300"}, catch_exceptions=False
    )
    return result.exit_code, result.output


@pytest.fixture
def hostile_repo(tmp_path):
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    n = 40
    rows = pa.table(
        {
            "driver_id": pa.array([k % 7 for k in range(n)], pa.int64()),
            "event_timestamp": pa.array(
                [t0 + timedelta(minutes=k) for k in range(n)], pa.timestamp("us", tz="UTC")
            ),
            "city": [HOSTILE[k % len(HOSTILE)] for k in range(n)],
            "rating": [float(k) for k in range(n)],
        }
    )
    root = make_repo(tmp_path / "repo", {"defs.py": DEFS}, {"data/trips.parquet": rows})
    store = FeatureStore(root)
    store.apply()
    store.materialize(t0, t0 + timedelta(days=1))
    store.close()
    return root


def test_fs_stats_prints_values_that_look_like_markup_as_they_are(hostile_repo):
    code, out = fs(hostile_repo, "stats", "driver_stats")
    assert code == 0, out
    code, text = fs(hostile_repo, "stats", "driver_stats", "--json")
    city = json.loads(text)["merged"]["columns"]["city"]
    cells = [c.strip() for c in next(line for line in out.splitlines() if "city" in line).split("│")]
    assert cells[4:6] == [city["min"], city["max"]] == sorted(HOSTILE)[0:4:3]  # brackets, backslash kept
    top = ", ".join(f"{t['value']} ({t['count']})" for t in city["top"][:3])
    assert cells[-2] == top + " ..." and "[bold red]boom (10)" in top


def test_fs_monitor_report_prints_a_path_with_brackets(tmp_path):
    sc = served_scenario(tmp_path / "sc", drivers=200, train_rows=1000)
    try:
        sc.serve(100)
        out_file = tmp_path / "o'q [/]" / "[bold]r.html"
        code, out = fs(sc.root, "monitor", "report", sc.ref, "--out", str(out_file))
        assert code == 0, out
        assert out_file.is_file() and f"wrote {out_file} (" in out
    finally:
        sc.close()


@pytest.mark.parametrize("since", ["1000000d", "99999999999999d", "1e400d"])
@pytest.mark.parametrize(
    "command",
    [
        ["monitor", "check"],
        ["monitor", "drift", "m@production"],
        ["monitor", "skew", "m@production"],
        ["monitor", "report", "m", "--out", "x"],
    ],
)
def test_a_since_beyond_the_calendar_is_bad_input(hostile_repo, command, since):
    code, out = fs(hostile_repo, *command, "--since", since)
    assert code == 2, out
    assert "--since" in out
    if since != "1e400d":
        assert f"'{since}' reaches back before the year 1; give a shorter duration" in out
