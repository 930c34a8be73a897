"""Live performance: labels fed back by request id and row (Python and HTTP), and the live metric
per day against the validation metric, checked against scikit-learn on the joined rows."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import get_scorer, mean_absolute_error, r2_score

from featurestore.errors import LogWriteError, MonitoringError
from featurestore.models.prediction_log import PredictionLog
from featurestore.monitoring.log import FEEDBACK_FOLDER, feedback_files
from featurestore.monitoring.performance import MIN_LABELLED_ROWS
from featurestore.monitoring.scorers import SCORERS, metric_value
from tests.monitoring.scenario import label_of, served_scenario
from tests.server.conftest import serve

KEYS = {"reader": ("read", "read-key-0123456789"), "writer": ("write", "write-key-0123456789")}
API_KEYS = "".join(
    f'[[server.api_keys]]\nname = "{n}"\nrole = "{r}"\nkey = "{k}"\n' for n, (r, k) in KEYS.items()
)


@pytest.fixture
def sc(tmp_path):
    scenario = served_scenario(tmp_path, drivers=200, train_rows=1000)
    yield scenario
    scenario.close()


def true_labels(log: pa.Table, offset: float = 0.0, seed: int = 0) -> list[dict]:
    """A label per logged prediction: the scenario's true function of its features, plus noise."""
    f = log.column("features").to_pylist()
    y = label_of([x["conv_rate"] for x in f], [x["acc_rate"] for x in f], [x["trips"] for x in f])
    y = y + np.random.default_rng(seed).normal(0, 0.05, len(y)) + offset
    return [
        {"request_id": r, "row": i, "label": float(v)}
        for r, i, v in zip(log.column("request_id").to_pylist(), log.column("row").to_pylist(), y)
    ]


def oracle(log: pa.Table, labels: list[dict], fn) -> tuple[float, dict]:
    """fn(labels, predictions) over every labelled prediction, and per UTC day of serving: the join
    done by hand in Python (the last label of a row wins)."""
    by_key = {(x["request_id"], x["row"]): x["label"] for x in labels}
    days: dict = {}
    for r, i, ts, p in zip(*(log.column(c).to_pylist() for c in ("request_id", "row", "ts", "prediction"))):
        if (r, i) in by_key:
            days.setdefault(ts.astimezone(timezone.utc).date(), []).append((by_key[r, i], p))
    every = [pair for pairs in days.values() for pair in pairs]
    per_day = {d: (len(v), fn([a for a, _ in v], [b for _, b in v])) for d, v in days.items()}
    return fn([a for a, _ in every], [b for _, b in every]), per_day


def serve_yesterday(sc, n: int) -> None:
    """`n` more predictions logged a day ago: real rows of the log, with new request ids and times,
    written by the real prediction-log writer."""
    rows = sc.log().slice(0, n).to_pylist()
    ts = datetime.now(timezone.utc) - timedelta(days=1)
    for i, row in enumerate(rows):
        row.update(request_id=f"y-{row['request_id']}", ts=ts, prediction=row["prediction"] + 0.01 * (i % 7))
    log = PredictionLog(sc.store.config.monitor.log_path)
    log.append(rows)
    log.flush()


def test_metric_per_day_equals_sklearn_on_the_joined_rows(sc):
    sc.serve(300)
    serve_yesterday(sc, 200)
    log = sc.log()
    labels = true_labels(log)
    labels = [x for k, x in enumerate(labels) if k % 5 != 0]  # some predictions never get a label
    assert sc.store.monitor.log_feedback(labels[:250]) == 250
    assert sc.store.monitor.log_feedback(pd.DataFrame(labels[250:])) == len(labels) - 250  # a DataFrame too
    report = sc.store.monitor.performance(sc.ref)
    # the registry keeps metrics by name: the first scorer name is neg_mean_absolute_error
    assert report.metric == "neg_mean_absolute_error"
    assert report.validation == sc.store.models.get(sc.ref).metrics["neg_mean_absolute_error"]
    live, per_day = oracle(log, labels, lambda y, p: -mean_absolute_error(y, p))
    assert report.n == len(labels) and report.served == log.num_rows
    assert report.live == pytest.approx(live, rel=1e-12)
    assert [(d.day, d.n) for d in report.days] == sorted((d, n) for d, (n, _) in per_day.items())
    assert len(report.days) == 2
    for d in report.days:
        assert d.value == pytest.approx(per_day[d.day][1], rel=1e-12)
    assert report.status == "ok" and not report.breach
    as_dict = report.to_dict()
    assert as_dict["days"][0]["day"] == min(per_day).isoformat() and as_dict["status"] == "ok"

    # a window: only the predictions served today
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    recent = sc.store.monitor.performance(sc.ref, start=today)
    assert [d.day for d in recent.days] == [today.date()]
    assert recent.live == pytest.approx(per_day[today.date()][1], rel=1e-12)


def test_the_configured_metric_wins(tmp_path):
    sc = served_scenario(tmp_path, drivers=200, train_rows=1000, config='[monitoring]\nmetric = "r2"\n')
    try:
        sc.serve(200)
        labels = true_labels(sc.log())
        sc.store.monitor.log_feedback(pa.Table.from_pylist(labels))  # an Arrow table too
        report = sc.store.monitor.performance(sc.ref)
        assert report.metric == "r2"
        assert report.live == pytest.approx(oracle(sc.log(), labels, r2_score)[0], rel=1e-12)
        assert report.status == "ok"
    finally:
        sc.close()


def test_wrong_labels_are_a_breach_and_the_newest_label_wins(sc):
    sc.serve(200)
    log = sc.log()
    monitor = sc.store.monitor
    monitor.log_feedback(true_labels(log, offset=0.5))  # every label off by 0.5: MAE ~ 0.5
    report = monitor.performance(sc.ref)
    assert report.status == "breach" and report.breach
    assert report.live == pytest.approx(-0.5, abs=0.02)
    assert report.live < report.validation - report.tolerance

    right = true_labels(log, seed=1)
    monitor.log_feedback(right)  # relabelled: the newest wins
    again = monitor.performance(sc.ref)
    assert again.status == "ok"
    assert again.live == pytest.approx(
        oracle(log, right, lambda y, p: -mean_absolute_error(y, p))[0], rel=1e-12
    )
    assert again.n == log.num_rows

    # twice in one call: the later one wins
    wrong = true_labels(log, offset=0.5)
    monitor.log_feedback([*right, *wrong])
    assert monitor.performance(sc.ref).status == "breach"


def test_the_tolerance_comes_from_the_config(tmp_path):
    config = "[monitoring.models.trip_eta]\nperformance_tolerance = 1.0\n"
    sc = served_scenario(tmp_path, drivers=200, train_rows=1000, config=config)
    try:
        sc.serve(100)
        sc.store.monitor.log_feedback(true_labels(sc.log(), offset=0.5))
        report = sc.store.monitor.performance(sc.ref)
        assert report.tolerance == 1.0 and report.status == "ok"
    finally:
        sc.close()


def test_a_metric_without_a_validation_value_is_not_configured(tmp_path):
    config = '[monitoring.models.trip_eta]\nmetric = "neg_median_absolute_error"\n'
    sc = served_scenario(tmp_path, drivers=200, train_rows=1000, config=config)
    try:
        sc.serve(100)
        labels = true_labels(sc.log())
        sc.store.monitor.log_feedback(labels[: MIN_LABELLED_ROWS - 1])
        report = sc.store.monitor.performance(sc.ref)
        # the metric is computed, but no validation value was recorded for it
        assert report.status == "not_configured" and report.validation is None and report.live is not None
    finally:
        sc.close()


def test_few_labels_are_insufficient(sc):
    sc.serve(100)
    labels = true_labels(sc.log(), offset=5.0)
    sc.store.monitor.log_feedback(labels[: MIN_LABELLED_ROWS - 1])
    report = sc.store.monitor.performance(sc.ref)
    assert report.status == "insufficient" and not report.breach and report.n == MIN_LABELLED_ROWS - 1
    sc.store.monitor.log_feedback(labels[MIN_LABELLED_ROWS - 1 : MIN_LABELLED_ROWS])
    assert sc.store.monitor.performance(sc.ref).status == "breach"


def test_nothing_served_or_fed_back(sc):
    report = sc.store.monitor.performance(sc.ref)
    assert (report.n, report.served, report.live, report.days, report.status) == (
        0,
        0,
        None,
        [],
        "insufficient",
    )
    sc.serve(50)
    assert sc.store.monitor.performance(sc.ref).served == 50


def test_an_unknown_metric_names_the_supported_ones(tmp_path):
    sc = served_scenario(tmp_path, drivers=200, train_rows=1000, config='[monitoring]\nmetric = "auc"\n')
    try:
        with pytest.raises(MonitoringError, match=r"'auc'.*supported: accuracy, .*roc_auc"):
            sc.store.monitor.performance(sc.ref)
    finally:
        sc.close()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"request_id": "r", "row": -1, "label": 1}, r"feedback row 2: 'row' must be a whole number"),
        ({"request_id": "r", "row": True, "label": 1}, r"feedback row 2: 'row'"),
        ({"request_id": "r", "row": 1.5, "label": 1}, r"feedback row 2: 'row'"),
        ({"request_id": 7, "row": 0, "label": 1}, r"feedback row 2: 'request_id' must be a non-empty string"),
        ({"request_id": "", "row": 0, "label": 1}, r"feedback row 2: 'request_id'"),
        ({"request_id": "r", "row": 0}, r"feedback row 2: 'label' is missing"),
        ({"request_id": "r", "row": 0, "label": None}, r"feedback row 2: 'label' must be a finite number"),
        ({"request_id": "r", "row": 0, "label": float("nan")}, r"feedback row 2: 'label'"),
        ({"request_id": "r", "row": 0, "label": 10**400}, r"feedback row 2: 'label'"),
        ({"request_id": "r", "row": 0, "label": [1]}, r"feedback row 2: 'label'"),
        ("r,0,1", r"feedback row 2: must be a dict"),
    ],
)
def test_bad_rows_are_refused_naming_the_row_and_nothing_is_written(sc, bad, match):
    good = [{"request_id": "a", "row": 0, "label": 1.0}, {"request_id": "b", "row": 3, "label": "yes"}]
    with pytest.raises(MonitoringError, match=match):
        sc.store.monitor.log_feedback([*good, bad, *good])
    assert feedback_files(sc.store.monitor.log_path) == []


def test_feedback_is_one_parquet_file_per_call(sc):
    monitor = sc.store.monitor
    assert monitor.log_feedback([]) == 0
    assert monitor.log_feedback([{"request_id": "a", "row": 0, "label": True}], model=sc.ref) == 1
    assert (
        monitor.log_feedback(
            [{"request_id": "a", "row": 1, "label": "cat"}, {"request_id": "b", "row": 0, "label": 2}]
        )
        == 2
    )
    files = feedback_files(monitor.log_path)
    assert len(files) == 2
    today = datetime.now(timezone.utc).date().isoformat()
    assert all(f"/{FEEDBACK_FOLDER}/date={today}/part-" in f for f in files)
    table = pa.concat_tables([pq.read_table(f) for f in files]).sort_by("received_at")
    assert table.column_names == ["request_id", "row", "label_num", "label_str", "model", "received_at"]
    assert table.column("label_num").to_pylist() == [1.0, None, 2.0]
    assert table.column("label_str").to_pylist() == [None, "cat", None]
    assert table.column("model").to_pylist() == ["trip_eta", None, None]
    with pytest.raises(MonitoringError, match="list of rows"):
        monitor.log_feedback({"request_id": "a", "row": 0, "label": 1})


def test_labels_for_another_model_are_not_joined(sc):
    sc.serve(100)
    labels = true_labels(sc.log(), offset=5.0)
    sc.store.models.register("other", sc.store.models.load(sc.ref), feature_service="eta_features")
    sc.store.monitor.log_feedback(labels, model="other")  # same request ids, another model's labels
    assert sc.store.monitor.performance(sc.ref).n == 0
    sc.store.monitor.log_feedback(labels, model="trip_eta")
    assert sc.store.monitor.performance(sc.ref).n == 100


def auth(who: str) -> dict:
    return {"X-API-Key": KEYS[who][1]}


def test_feedback_over_http_with_roles(tmp_path):
    config = f"[server]\nmax_batch_rows = 150\n{API_KEYS}"
    sc = served_scenario(tmp_path, drivers=200, train_rows=1000, config=config)
    try:
        sc.serve(200)
        log = sc.log()
        labels = true_labels(log)
        path = f"/models/{sc.ref}/feedback"
        with serve(sc.store) as server, server.client() as client:
            assert client.post(path, json={"feedback": labels[:10]}).status_code == 401
            r = client.post(path, json={"feedback": labels[:10]}, headers=auth("reader"))
            assert r.status_code == 403 and "needs 'write'" in r.json()["error"]
            bad = [*labels[:3], {**labels[3], "row": -2}, *labels[4:6]]
            r = client.post(path, json={"feedback": bad}, headers=auth("writer"))
            assert r.status_code == 422
            assert [d["field"] for d in r.json()["detail"]] == ["body.feedback.3.row"]
            r = client.post(path, json={"feedback": [{**labels[0], "label": None}]}, headers=auth("writer"))
            assert r.status_code == 422 and r.json()["detail"][0]["field"] == "body.feedback.0.label"
            r = client.post(path, json={"feedback": [{**labels[0], "extra": 1}]}, headers=auth("writer"))
            assert r.status_code == 422
            assert feedback_files(sc.store.monitor.log_path) == []  # nothing written by a refused batch
            r = client.post(path, json={"feedback": labels[:151]}, headers=auth("writer"))
            assert r.status_code == 413 and "max_batch_rows" in r.json()["error"]
            r = client.post("/models/nope/feedback", json={"feedback": labels[:1]}, headers=auth("writer"))
            assert r.status_code == 404
            for start in (0, 100):
                r = client.post(path, json={"feedback": labels[start : start + 100]}, headers=auth("writer"))
                assert r.status_code == 200 and r.json() == {"model": "trip_eta", "recorded": 100}
        report = sc.store.monitor.performance(sc.ref)
        assert report.n == 200
        assert report.live == pytest.approx(
            oracle(log, labels, lambda y, p: -mean_absolute_error(y, p))[0], rel=1e-12
        )
        audit = sc.store.registry.audit_log("feedback")[::-1]
        assert [(e["actor"], e["detail"]["rows"]) for e in audit] == [("writer", 100), ("writer", 100)]
    finally:
        sc.close()


# -- the metric table against scikit-learn's own scorers ------------------------------------------------


def scorer_inputs(name: str):
    """(estimator, y, p) for sklearn's scorer `name`: an estimator answering the fixed predictions p."""
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

    class Fixed(BaseEstimator):
        def __init__(self, p=None):
            self.p = p

        def fit(self, X, y):
            self.classes_ = np.unique(y)
            return self

        def predict(self, X):
            return self.p

        def decision_function(self, X):
            return self.p

        def predict_proba(self, X):
            return np.c_[1 - self.p, self.p]

    class Classifier(ClassifierMixin, Fixed):
        pass

    class Regressor(RegressorMixin, Fixed):
        pass

    rng = np.random.default_rng(sorted(SCORERS).index(name))
    n = 300
    if not SCORERS[name].numeric:  # class labels: binary for the plain names, 3 classes for the averages
        classes = 3 if name.endswith(("_macro", "_micro", "_weighted")) or name == "accuracy" else 2
        y = rng.integers(0, classes, n)
        p = np.where(rng.random(n) < 0.7, y, rng.integers(0, classes, n))
        return Classifier(p), y, p
    if name in ("roc_auc", "average_precision", "neg_brier_score"):  # scores of a binary label
        y = rng.integers(0, 2, n)
        p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
        return Classifier(p), y, p
    y = rng.gamma(2, 2, n) + 0.1  # positive, for the log and deviance losses
    p = y * rng.normal(1, 0.1, n) + 0.01
    return Regressor(p), y, p


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_every_metric_equals_the_sklearn_scorer_of_its_name(name):
    estimator, y, p = scorer_inputs(name)
    X = np.zeros((len(y), 1))
    expected = get_scorer(name)(estimator.fit(X, y), X, y)
    assert math.isfinite(expected)
    assert metric_value(name, y, p) == pytest.approx(expected, rel=1e-12)


def test_string_labels_of_a_classifier(sc):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score

    frame = sc.store.training_sets.result("trip_eta_train").to_pandas().dropna()
    X = frame[["conv_rate", "acc_rate", "trips"]].astype("float64")
    y = np.where(label_of(X["conv_rate"], X["acc_rate"], X["trips"]) > 1.6, "high", "low")
    model = LogisticRegression().fit(X, y)
    metrics = {"accuracy": float(accuracy_score(y, model.predict(X)))}
    mv = sc.store.models.register(
        "kind", model, feature_service="eta_features", metrics=metrics, missing_policy="null"
    )
    sc.store.models.set_alias("kind", "production", mv.version)
    rng = np.random.default_rng(3)
    for _ in range(3):
        sc.server.predict(
            "kind@production", [{"driver_id": int(d)} for d in rng.integers(1, sc.drivers + 1, 50)]
        )
    sc.server.log.flush()
    log = sc.server.log.read("kind")
    assert set(log.column("prediction").to_pylist()) <= {"high", "low"}
    f = log.column("features").to_pylist()
    truth = label_of([x["conv_rate"] for x in f], [x["acc_rate"] for x in f], [x["trips"] for x in f])
    labels = [
        {"request_id": r, "row": i, "label": "high" if v > 1.6 else "low"}
        for r, i, v in zip(log.column("request_id").to_pylist(), log.column("row").to_pylist(), truth)
    ]
    labels[0]["label"] = "low" if labels[0]["label"] == "high" else "high"  # one wrong label
    sc.store.monitor.log_feedback(labels, model="kind")
    report = sc.store.monitor.performance("kind@production")
    assert report.metric == "accuracy" and report.n == 150
    assert report.live == pytest.approx(oracle(log, labels, accuracy_score)[0], rel=1e-12)

    # numbers fed back (the newest labels) for a model that predicts strings: unusable, not an error
    sc.store.monitor.log_feedback([{**x, "label": 1} for x in labels], model="kind")
    report = sc.store.monitor.performance("kind@production")
    assert (report.n, report.unusable, report.status) == (0, 150, "insufficient")
    assert "150 label(s) not of the predictions' type left out (e.g. request_id " in report.detail


# -- labels of another type, reused request ids, unreadable and unwritable logs -------------------------


def test_a_label_of_another_type_is_left_out_and_cannot_hide_a_breach(sc):
    sc.serve(200)
    labels = true_labels(sc.log(), offset=0.5)  # every label off by 0.5: a breach
    odd = labels[37]
    labels[37] = {**odd, "label": "NaN"}  # a string among numbers
    sc.store.monitor.log_feedback(labels)
    report = sc.store.monitor.performance(sc.ref)
    assert report.status == "breach" and (report.n, report.unusable) == (199, 1)
    assert (
        f"1 label(s) not of the predictions' type left out (e.g. request_id {odd['request_id']!r} row "
        in (report.detail)
    )
    assert f"row {odd['row']})" in report.detail
    assert report.to_dict()["unusable"] == 1
    numeric = [x for k, x in enumerate(labels) if k != 37]
    assert report.live == pytest.approx(
        oracle(sc.log(), numeric, lambda y, p: -mean_absolute_error(y, p))[0], rel=1e-12
    )
    result = sc.store.monitor.check(since=timedelta(hours=1))
    assert [(b.check, b.target) for b in result.breaches] == [("performance", "trip_eta@production (v1)")]


def test_a_reused_request_id_labels_only_its_newest_prediction(sc):
    """Three requests of 40 rows share one request id: each (request id, row) label is joined to the
    newest of its predictions (by ts), once."""
    for k in range(3):
        rows = [{"driver_id": d} for d in range(1 + 40 * k, 41 + 40 * k)]  # other drivers, other predictions
        sc.server.predict(sc.ref, rows, request_id="order-1")
    sc.server.log.flush()
    log = sc.log()
    newest = {
        r: p for r, ts, p in sorted(zip(*(log.column(c).to_pylist() for c in ("row", "ts", "prediction"))))
    }
    assert len({p for p in log.column("prediction").to_pylist()}) > 40  # the requests predicted differently
    labels = [{"request_id": "order-1", "row": i, "label": newest[i]} for i in range(40)]
    sc.store.monitor.log_feedback(labels)
    report = sc.store.monitor.performance(sc.ref)
    assert (report.n, report.served) == (40, 120)
    assert report.metric == "neg_mean_absolute_error"
    assert report.live == pytest.approx(0.0, abs=1e-12)  # the labels are the newest predictions


def test_an_unreadable_log_file_is_an_error_naming_it(sc):
    sc.serve(100)
    monitor = sc.store.monitor
    monitor.log_feedback(true_labels(sc.log()))
    today = f"date={datetime.now(timezone.utc).date()}"
    for folder in (monitor.log_path / sc.model / today, monitor.log_path / FEEDBACK_FOLDER / today):
        bad = folder / ("part-v1-zzz.parquet" if folder.parent.name == sc.model else "part-zzz.parquet")
        bad.write_bytes(b"garbage")
        with pytest.raises(MonitoringError) as e:
            monitor.performance(sc.ref)
        message = str(e.value)
        assert message.startswith("cannot read the prediction or feedback log of model trip_eta ")
        assert str(bad) in message and "move the damaged file out of the log folder" in message
        assert str(next(folder.glob("part-*[!z].parquet"))) not in message  # the good files are not blamed
        bad.unlink()
    assert monitor.performance(sc.ref).n == 100


def test_an_unwritable_log_path_is_a_log_write_error_and_a_503(tmp_path):
    sc = served_scenario(
        tmp_path, drivers=200, train_rows=1000, config='[monitoring]\nlog_path = "data/log"\n'
    )
    try:
        log_path = sc.store.monitor.log_path
        log_path.write_text("a file, not a folder")
        row = {"request_id": "r1", "row": 0, "label": 1.0}
        with pytest.raises(
            LogWriteError,
            match=rf"cannot write the feedback log under {log_path} \(\[monitoring\] "
            r"log_path\): Not a directory .*it must be a writable folder",
        ):
            sc.store.monitor.log_feedback([row])
        assert issubclass(LogWriteError, MonitoringError)
        with serve(sc.store) as server, server.client() as client:
            r = client.post(f"/models/{sc.ref}/feedback", json={"feedback": [row]})
            assert r.status_code == 503, r.text
            assert r.json()["error"].startswith(f"cannot write the feedback log under {log_path}")
            r = client.post(f"/models/{sc.ref}/feedback", json={"feedback": [{**row, "row": -1}]})
            assert r.status_code == 422  # bad input is still the client's
        assert log_path.read_text() == "a file, not a folder"
    finally:
        sc.close()


def write_outcomes(sc, rows: list[dict]) -> None:
    """The repo's label source `outcomes` (a Parquet file of request_id, row, label, at) holding
    `rows`, applied."""
    pq.write_table(pa.Table.from_pylist(rows), sc.root / "data" / "outcomes.parquet")
    (sc.root / "outcomes.py").write_text(
        "from featurestore import ParquetSource\n"
        'outcomes = ParquetSource(name="outcomes", path="data/outcomes.parquet", timestamp_field="at")\n'
    )
    sc.store.apply()


def test_a_label_source_of_the_repo_is_read_beside_the_labels_fed_back(tmp_path):
    config = '[monitoring.models.trip_eta]\nlabel_source = "outcomes"\n'
    sc = served_scenario(tmp_path, drivers=200, train_rows=1000, config=config)
    try:
        sc.serve(200)
        log = sc.log()
        labels = true_labels(log)
        # The warehouse's outcomes table holds every label, two of them wrong; the two corrections
        # are fed back later, and a label fed back wins over the source's.
        stored = [dict(x) for x in labels]
        stored[0]["label"] += 100.0
        stored[1]["label"] += 100.0
        write_outcomes(sc, [{**x, "at": datetime.now(timezone.utc)} for x in stored])
        monitor = sc.store.monitor
        wrong = monitor.performance(sc.ref)
        assert wrong.n == len(labels)
        assert wrong.live == pytest.approx(-oracle(log, stored, mean_absolute_error)[0], rel=1e-12)
        monitor.log_feedback(labels[:2])
        right = monitor.performance(sc.ref)
        assert right.live == pytest.approx(-oracle(log, labels, mean_absolute_error)[0], rel=1e-12)
    finally:
        sc.close()


def test_a_label_source_that_is_not_one_is_named(tmp_path):
    sc = served_scenario(
        tmp_path, drivers=200, train_rows=1000, config='[monitoring]\nlabel_source = "stats_sourse"\n'
    )
    try:
        sc.serve(100)
        with pytest.raises(MonitoringError, match="label_source 'stats_sourse'.*did you mean 'stats_source'"):
            sc.store.monitor.performance(sc.ref)
        bad = served_scenario(
            tmp_path / "b",
            drivers=200,
            train_rows=1000,
            config='[monitoring]\nlabel_source = "stats_source"\n',
        )
        try:
            bad.serve(100)
            with pytest.raises(MonitoringError, match="label source 'stats_source'.*no column 'request_id'"):
                bad.store.monitor.performance(bad.ref)
        finally:
            bad.close()
    finally:
        sc.close()


def test_a_label_source_row_given_twice_the_newer_wins_whatever_the_order(tmp_path):
    config = '[monitoring.models.trip_eta]\nlabel_source = "outcomes"\n'
    sc = served_scenario(tmp_path, drivers=200, train_rows=1000, config=config)
    try:
        sc.serve(200)
        log = sc.log()
        labels = true_labels(log)
        now = datetime.now(timezone.utc)
        rows = [{**x, "at": now} for x in labels] + [
            {**x, "label": x["label"] + 100.0, "at": now - timedelta(hours=1)} for x in labels
        ]
        expected = -oracle(log, labels, mean_absolute_error)[0]
        for order in (rows, rows[::-1]):
            write_outcomes(sc, order)
            assert sc.store.monitor.performance(sc.ref).live == pytest.approx(expected, rel=1e-12)
        bad = pa.Table.from_pylist([{**x, "row": f"{x['row']}x"} for x in rows])
        pq.write_table(bad, tmp_path / "data" / "outcomes.parquet")
        with pytest.raises(
            MonitoringError, match="label source 'outcomes' of model trip_eta: column 'row' is VARCHAR"
        ):
            sc.store.monitor.performance(sc.ref)
    finally:
        sc.close()
