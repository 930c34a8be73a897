"""The request metrics: counted per request in plain numbers, exposed as Prometheus families on scrape."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from server.metrics import _BUCKETS, Metrics


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

    assert got[("fs_http_requests_total", labels(method="POST", endpoint="/features/online", status="200"))] == 6
    assert got[("fs_http_requests_total", labels(method="POST", endpoint="/features/online", status="404"))] == 1
    assert got[("fs_http_requests_total", labels(method="GET", endpoint="/health", status="200"))] == 1
    lookups = [*observed, 0.002]
    for bound in (*_BUCKETS, float("inf")):
        le = "+Inf" if bound == float("inf") else repr(bound)
        expected = sum(1 for v in lookups if v <= bound)
        key = ("fs_http_request_duration_seconds_bucket", labels(method="POST", endpoint="/features/online", le=le))
        assert got[key] == expected, le
    series = labels(method="POST", endpoint="/features/online")
    assert got[("fs_http_request_duration_seconds_count", series)] == len(lookups)
    assert abs(got[("fs_http_request_duration_seconds_sum", series)] - sum(lookups)) < 1e-9


def test_an_app_with_no_requests_yet_exposes_the_families():
    text = Metrics().render().decode()
    assert "# TYPE fs_http_requests_total counter" in text
    assert "# TYPE fs_http_request_duration_seconds histogram" in text
