"""`fs models list|show|register|alias|history` through the real `fs` command group."""

from __future__ import annotations

import json

import skops.io as sio
from click.testing import CliRunner

from featurestore.cli import cli


def run(store, *args):
    result = CliRunner().invoke(
        cli, ["--repo", str(store.repo_path), "models", *args], catch_exceptions=False, env={"COLUMNS": "200"}
    )
    return result.exit_code, result.output


def test_models_cli_round_trip(store, linear_model, tmp_path):
    sio.dump(linear_model, tmp_path / "eta.skops")
    code, out = run(
        store,
        "register",
        "eta",
        str(tmp_path / "eta.skops"),
        "-s",
        "driver_activity",
        "--metric",
        "mae=1.5",
        "--tag",
        "team=rides",
        "--default",
        "trips=0",
        "--alias",
        "staging",
    )
    assert code == 0, out
    assert "Registered eta version 1 (sklearn/skops" in out and "eta@staging -> version 1" in out
    code, out = run(store, "register", "eta", str(tmp_path / "eta.skops"), "-s", "driver_activity")
    assert code == 0 and "version 2" in out

    code, out = run(store, "alias", "eta", "production", "2")
    assert code == 0 and "eta@production -> version 2" in out
    code, out = run(store, "alias", "eta", "production", "1")
    assert "(was 2)" in out
    assert store.models.aliases("eta") == {"production": 1, "staging": 1}
    code, out = run(store, "alias", "eta", "staging", "--delete")
    assert code == 0 and store.models.aliases("eta") == {"production": 1}

    code, out = run(store, "list")
    assert code == 0 and "eta" in out and "production=1" in out
    code, out = run(store, "show", "eta@production", "--json")
    shown = json.loads(out)
    assert (shown["version"], shown["metrics"], shown["tags"]) == (1, {"mae": 1.5}, {"team": "rides"})
    assert shown["missing_policy"] == {"mode": "defaults", "defaults": {"trips": 0}}
    code, out = run(store, "show", "eta")
    assert code == 0 and "driver_activity" in out
    code, out = run(store, "history", "eta")
    assert (
        code == 0
        and "registered version 2" in out
        and "production -> 1 (was 2)" in out
        and "removed staging" in out
    )


def test_models_cli_errors_are_one_line(store, linear_model, tmp_path):
    code, out = run(store, "show", "nope")
    assert code == 1 and "unknown model 'nope'" in out
    sio.dump(linear_model, tmp_path / "eta.skops")
    code, out = run(store, "register", "eta", str(tmp_path / "eta.skops"), "-s", "rates")
    assert code == 1 and "do not match" in out and "Traceback" not in out
