"""`store.monitor.shadow`: production against its challenger on the same logged (request_id, row)
pairs, checked against a hand computation on the prediction log; the HTML report's Shadow section
and `fs monitor shadow`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sklearn.metrics import mean_absolute_error

from featurestore.cli import cli
from featurestore.errors import MonitoringError
from featurestore.monitoring.shadow import _likeness
from tests.monitoring.scenario import FEATURES, MODEL, label_of, served_scenario


@pytest.fixture
def sc(tmp_path):
    from sklearn.linear_model import Ridge

    sc = served_scenario(tmp_path, drivers=200, train_rows=1000)
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"conv_rate": rng.normal(0.5, 0.1, 300), "acc_rate": rng.random(300)})
    X["trips"] = rng.poisson(20, 300).astype(float)
    challenger = Ridge(alpha=50.0).fit(X[FEATURES], label_of(X.conv_rate, X.acc_rate, X.trips, rng))
    mv = sc.store.models.register(
        MODEL, challenger, feature_service="eta_features", metrics={"neg_mean_absolute_error": -0.5}
    )
    sc.store.models.set_alias(MODEL, "challenger", mv.version)
    sc.serve(1, seed=9)  # the first request through production finds the challenger
    assert sc.server.flush_shadow()
    sc.serve(400, seed=1)
    assert sc.server.flush_shadow()
    assert sc.server.log is not None
    sc.server.log.flush()
    sc.challenger = mv.version
    yield sc
    sc.close()


def pairs_of(sc) -> pd.DataFrame:
    log = sc.log().to_pandas()
    primary = log[(log.variant == "primary") & (log.model_version == sc.version)]
    shadow = log[(log.variant == "shadow") & (log.model_version == sc.challenger)]
    return primary.merge(shadow, on=["request_id", "row"], suffixes=("", "_shadow"))


def test_the_comparison_equals_a_hand_computation_on_the_logged_rows(sc):
    pairs = pairs_of(sc)
    assert len(pairs) == 400
    labelled = pairs.iloc[::2]  # labels for every other compared row
    truth = label_of(
        [f["conv_rate"] for f in labelled.features],
        [f["acc_rate"] for f in labelled.features],
        [f["trips"] for f in labelled.features],
    ) + np.linspace(-0.3, 0.3, len(labelled))
    feedback = [
        {"request_id": r, "row": int(i), "label": float(y)}
        for r, i, y in zip(labelled.request_id, labelled.row, truth)
    ]
    assert sc.store.monitor.log_feedback(feedback) == 200

    report = sc.store.monitor.shadow(sc.model)
    assert (report.production, report.challenger) == (sc.version, sc.challenger)
    assert report.rows == 400 and report.shadow_rows == 400 and report.kind == "number"
    assert report.mean_abs_diff == pytest.approx(
        float(np.mean(np.abs(pairs.prediction - pairs.prediction_shadow))), rel=1e-12
    )
    assert report.agreement is None and report.metric == "neg_mean_absolute_error" and report.labelled == 200
    assert report.production_live == pytest.approx(
        -mean_absolute_error(truth, labelled.prediction), rel=1e-12
    )
    assert report.challenger_live == pytest.approx(
        -mean_absolute_error(truth, labelled.prediction_shadow), rel=1e-12
    )
    assert report.production_live != pytest.approx(report.challenger_live)
    [day] = report.days
    assert (day.rows, day.labelled) == (400, 200)
    assert day.challenger_live == pytest.approx(report.challenger_live)
    assert report.to_dict()["days"][0]["rows"] == 400

    # the challenger version's own monitoring counts its shadow rows: its predictions on real traffic
    performance = sc.store.monitor.performance(f"{MODEL}@challenger")
    assert performance.served == 400 and performance.n == 200
    assert performance.live == pytest.approx(report.challenger_live, rel=1e-12)


def test_log_files_written_before_the_variant_column_count_as_primary(sc):
    before = sc.store.monitor.shadow(sc.model)
    for file in Path(sc.store.config.monitor.log_path, MODEL).glob(f"date=*/part-v{sc.version}-*.parquet"):
        table = pq.read_table(file)
        pq.write_table(table.drop_columns(["variant"]), file)
    after = sc.store.monitor.shadow(sc.model)
    assert (after.rows, after.mean_abs_diff) == (before.rows, before.mean_abs_diff)


def test_labels_are_compared_for_equality():
    table = pa.table({"production": ["a", "b", "a", "c"], "challenger": ["a", "a", "a", "c"]})
    assert _likeness(table) == ("label", 0.75, None)
    numbers = pa.table({"production": [1.0, 2.0, None], "challenger": [1.5, 1.0, 3.0]})
    assert _likeness(numbers) == ("number", None, 0.75)


def test_no_challenger_alias_is_a_clear_error_and_no_report_section(sc, tmp_path):
    out = sc.store.monitor.report(sc.ref, tmp_path / "with.html").read_text()
    assert 'id="shadow"' in out and f"challenger v{sc.challenger}" in out and "400" in out
    sc.store.models.delete_alias(MODEL, "challenger")
    with pytest.raises(MonitoringError, match=f"model {MODEL} has no challenger alias"):
        sc.store.monitor.shadow(sc.model)
    assert sc.store.monitor.shadow(sc.model, challenger=sc.challenger).rows == 400  # by number
    out = sc.store.monitor.report(sc.ref, tmp_path / "without.html").read_text()
    assert 'id="shadow"' not in out


def test_fs_monitor_shadow(sc):
    def fs(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["--repo", str(sc.root), *args], env={"COLUMNS": "300"})
        return result.exit_code, result.output

    code, text = fs("monitor", "shadow", MODEL, "--since", "1d", "--json")
    assert code == 0, text
    data = json.loads(text)
    assert (data["rows"], data["production"], data["challenger"]) == (400, sc.version, sc.challenger)
    code, text = fs("monitor", "shadow", f"{MODEL}@production")
    assert code == 0 and f"production v{sc.version} vs challenger v{sc.challenger}" in text and "400" in text
    code, text = fs("monitor", "shadow", "nope")
    assert code == 2 and "nope" in text


def test_a_reused_request_id_pairs_each_request_with_its_own_shadow_rows(sc):
    """ "dup" is served twice: first shadowed, then (the challenger alias gone) not. The shadow rows
    carry the first request's ts, so they pair with its production rows only, never with the later
    request's; and a label fed back for "dup" belongs to the later (newest) request: no labelled pair."""
    server = sc.server
    first = server.predict(sc.ref, [{"driver_id": 3}, {"driver_id": 4}], request_id="dup")
    assert server.flush_shadow()
    sc.store.models.delete_alias(MODEL, "challenger")
    second = server.predict(sc.ref, [{"driver_id": 150}, {"driver_id": 170}], request_id="dup")
    assert server.flush_shadow()
    server.log.flush()
    assert first["predictions"] != second["predictions"]
    sc.store.models.set_alias(MODEL, "challenger", sc.challenger)
    log = sc.log().to_pandas()
    dup = log[log.request_id == "dup"]
    assert len(dup[dup.variant == "primary"]) == 4 and len(dup[dup.variant == "shadow"]) == 2
    assert sc.store.monitor.log_feedback([{"request_id": "dup", "row": 0, "label": 1.0}]) == 1

    report = sc.store.monitor.shadow(sc.model)
    primary = log[(log.variant == "primary") & (log.model_version == sc.version)]
    shadow = log[(log.variant == "shadow") & (log.model_version == sc.challenger)]
    pairs = primary.merge(shadow, on=["request_id", "row", "ts"], suffixes=("", "_shadow"))
    assert report.rows == len(pairs) == 402 and report.shadow_rows == 402
    assert sorted(pairs[pairs.request_id == "dup"].prediction) == sorted(first["predictions"])
    assert report.mean_abs_diff == pytest.approx(
        float(np.mean(np.abs(pairs.prediction - pairs.prediction_shadow))), rel=1e-12
    )
    assert report.labelled == 0  # the label is the later request's, which the challenger never saw
