"""`fs models list|show|register|alias|history` through the real `fs` command group."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import skops.io as sio
from click.testing import CliRunner

from featurestore.cli import cli
from tests.models.conftest import NOW, stats_rows
from tests.repo_builder import write_table


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


def test_models_list_answers_json(store, linear_model, tmp_path):
    sio.dump(linear_model, tmp_path / "eta.skops")
    run(
        store,
        "register",
        "eta",
        str(tmp_path / "eta.skops"),
        "-s",
        "driver_activity",
        "--alias",
        "production",
    )
    code, out = run(store, "list", "--json")
    assert code == 0
    (listed,) = json.loads(out)
    assert (listed["name"], listed["latest_version"], listed["aliases"]) == ("eta", 1, {"production": 1})


def training_sets(store, *args):
    result = CliRunner().invoke(
        cli, ["--repo", str(store.repo_path), "training-sets", *args], catch_exceptions=False
    )
    return result.exit_code, result.output


def test_training_sets_list_show_and_compare(store):
    entities = pd.DataFrame(
        {
            "driver_id": [1, 2, 3],
            "event_timestamp": [NOW - timedelta(hours=h) for h in (1, 2, 3)],
            "label": [0.0, 1.0, 2.0],
        }
    )
    saved = store.get_historical_features(entities, features="driver_activity").save(
        "eta_train_with_a_name_longer_than_a_narrow_column", description="first try"
    )
    name = saved.name

    code, out = training_sets(store, "list")
    assert code == 0 and name in out and saved.fingerprint[:12] in out and "first try" in out
    code, out = training_sets(store, "list", "--json")
    (listed,) = json.loads(out)
    assert (listed["name"], listed["rows"], listed["fingerprint"]) == (name, 3, saved.fingerprint)
    assert listed["feature_refs"] == ["driver_stats:conv_rate", "driver_stats:acc_rate", "driver_stats:trips"]

    code, out = training_sets(store, "show", name)
    assert code == 0 and saved.fingerprint in out and "driver_stats (version 1" in out
    assert "driver_id, event_timestamp, label" in out
    code, out = training_sets(store, "show", name, "--json")
    assert json.loads(out) == json.loads(json.dumps(saved.to_dict()))

    code, out = training_sets(store, "compare", name)
    assert code == 0 and "regenerates identically" in out
    # the data behind a column changes: compare says so, and exits 1 (like diff) so CI can gate on it
    write_table(store.repo_path / "data" / "stats.parquet", stats_rows(shift=1.0))
    store.materialize(NOW - timedelta(days=5), NOW)
    code, out = training_sets(store, "compare", name)
    assert code == 1 and "differs from its regeneration" in out and "column 'conv_rate' changed" in out
    code, out = training_sets(store, "compare", name, "--json")
    compared = json.loads(out)
    assert code == 1 and compared["same"] is False and compared["recorded"] == saved.fingerprint
    assert "column 'conv_rate' changed" in compared["changes"]

    code, out = training_sets(store, "show", "eta_trian")
    assert code == 1 and "unknown training set 'eta_trian'" in out and "Traceback" not in out
