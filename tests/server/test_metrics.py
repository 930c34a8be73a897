"""The request metrics: counted per request in plain numbers, exposed as Prometheus families on scrape."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from featurestore.server.metrics import _BUCKETS, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_counts_and_histogram_match_the_observations():
    m = Metrics()
    observed = [0.0001, 0.0005, 0.0007, 0.002, 3.0, 11.0]  # 0.0005 sits on a bound: counted in its bucket
    for v in observed:
        m.observe("POST", "/features/online", 200, v)
    m.observe("POST", "/features/online", 404, 0.002)
    m.observe("GET", "/health", 200, 0.0001)
    got = samples(m)

    def labels(**kw):
        return frozenset(kw.items())

    assert (
        got[("fs_http_requests_total", labels(method="POST", endpoint="/features/online", status="200"))] == 6
    )
    assert (
        got[("fs_http_requests_total", labels(method="POST", endpoint="/features/online", status="404"))] == 1
    )
    assert got[("fs_http_requests_total", labels(method="GET", endpoint="/health", status="200"))] == 1
    lookups = [*observed, 0.002]
    for bound in (*_BUCKETS, float("inf")):
        le = "+Inf" if bound == float("inf") else repr(bound)
        expected = sum(1 for v in lookups if v <= bound)
        key = (
            "fs_http_request_duration_seconds_bucket",
            labels(method="POST", endpoint="/features/online", le=le),
        )
        assert got[key] == expected, le
    series = labels(method="POST", endpoint="/features/online")
    assert got[("fs_http_request_duration_seconds_count", series)] == len(lookups)
    assert abs(got[("fs_http_request_duration_seconds_sum", series)] - sum(lookups)) < 1e-9


def test_an_app_with_no_requests_yet_exposes_the_families():
    text = Metrics().render().decode()
    assert "# TYPE fs_http_requests_total counter" in text
    assert "# TYPE fs_http_request_duration_seconds histogram" in text


def test_workers_sharing_a_folder_each_scrape_the_sum_of_all(tmp_path, caplog):
    """Two workers of one server (two Metrics on one folder): a scrape of either shows both's counts."""
    first, second = Metrics(tmp_path), Metrics(tmp_path)
    alone = Metrics()
    for seconds in (0.0002, 0.003, 0.2):
        first.observe("POST", "/features/online", 200, seconds)
    for seconds in (0.0004, 7.0):
        second.observe("POST", "/features/online", 200, seconds)
    second.observe("POST", "/features/online", 404, 0.001)
    first.online_store_errors.labels("timeout").inc()
    second.online_store_errors.labels("timeout").inc(2)
    second.pushed_rows.labels("driver_push", "online").inc(5)
    second.publish()
    first_only = samples(first)  # publishes first's own counts, then sums both
    alone.observe("GET", "/health", 200, 0.001)

    def labels(**kw):
        return frozenset(kw.items())

    lookups = labels(method="POST", endpoint="/features/online")
    for got in (first_only, samples(second)):
        assert (
            got[("fs_http_requests_total", labels(method="POST", endpoint="/features/online", status="200"))]
            == 5
        )
        assert (
            got[("fs_http_requests_total", labels(method="POST", endpoint="/features/online", status="404"))]
            == 1
        )
        assert got[("fs_http_request_duration_seconds_count", lookups)] == 6
        assert abs(got[("fs_http_request_duration_seconds_sum", lookups)] - 7.2046) < 1e-9
        for bound in (*_BUCKETS, float("inf")):
            le = "+Inf" if bound == float("inf") else repr(bound)
            expected = sum(1 for v in (0.0002, 0.003, 0.2, 0.0004, 7.0, 0.001) if v <= bound)
            assert got[("fs_http_request_duration_seconds_bucket", lookups | {("le", le)})] == expected, le
        assert got[("fs_online_store_errors_total", labels(reason="timeout"))] == 3
        assert got[("fs_pushed_rows_total", labels(source="driver_push", to="online"))] == 5
        assert ("fs_http_requests_total", labels(method="GET", endpoint="/health", status="200")) not in got
    created = [
        m.registry.get_sample_value("fs_online_store_errors_created", {"reason": "timeout"})
        for m in (first, second)
    ]
    assert first_only[("fs_online_store_errors_created", labels(reason="timeout"))] == min(created)
    assert (
        samples(alone)[("fs_http_requests_total", labels(method="GET", endpoint="/health", status="200"))]
        == 1
    )
    assert not any(
        k[0] == "fs_http_requests_total" and ("endpoint", "/features/online") in k[1] for k in samples(alone)
    )
    assert len(list(tmp_path.glob("worker-*.json"))) == 2

    # The second worker dies: what it published keeps counting, so totals never go down.
    del second
    first.observe("POST", "/features/online", 200, 0.001)
    assert samples(first)[("fs_http_request_duration_seconds_count", lookups)] == 7

    # A file that is not a snapshot is left out, with a warning; half-written ones are never read.
    (tmp_path / "worker-junk.json").write_bytes(b"{not json")
    (tmp_path / ".worker-1-ab.tmp").write_bytes(b"[not json")
    (tmp_path / "notes.json").write_bytes(b"[not json")  # not a snapshot's name: never read
    assert samples(first)[("fs_http_request_duration_seconds_count", lookups)] == 7
    assert "worker-junk.json" in caplog.text and "notes.json" not in caplog.text and ".tmp" not in caplog.text


def test_a_snapshot_that_cannot_be_written_is_logged_and_the_scrape_still_answers(tmp_path, caplog):
    metrics = Metrics(tmp_path / "shared")
    metrics.observe("GET", "/health", 200, 0.001)
    (tmp_path / "shared").rmdir()  # the folder is gone (e.g. removed by hand)
    metrics.publish()  # what the worker's timer and its shutdown call: never raises
    assert "cannot write this worker's snapshot" in caplog.text
    metrics.observe("GET", "/health", 200, 0.001)
    text = metrics.render().decode()  # the scrape still answers this worker's own counts, as they are now
    assert 'fs_http_requests_total{endpoint="/health",method="GET",status="200"} 2.0' in text
