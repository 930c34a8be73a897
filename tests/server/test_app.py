"""The rest of the app: catalog with freshness, health/ready/metrics, error bodies, extra routers,
and `featurestore.server.run.serve` in a real subprocess with several workers."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, Depends
from prometheus_client.parser import text_string_to_metric_families

from featurestore import FeatureStore
from featurestore.server.auth import require
from tests.redis_server import free_port
from tests.repo_builder import make_repo
from tests.server.conftest import DEFINITIONS, build_repo, serve

ROOT = Path(__file__).resolve().parents[2]


def test_catalog_lists_definitions_with_freshness(tmp_path):
    store = build_repo(tmp_path, "sqlite")
    start, end = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 2, tzinfo=timezone.utc)
    store.registry.record_materialization(
        "driver_stats", start, end, rows=20, online_rows=20, advance_watermark=True
    )
    with serve(store) as server, server.client() as client:
        entities = client.get("/catalog/entities").json()["entities"]
        assert [(e["name"], e["join_keys"]) for e in entities] == [
            ("driver", ["driver_id"]),
            ("route", ["origin", "destination"]),
        ]
        views = {v["name"]: v for v in client.get("/catalog/views").json()["views"]}
        assert set(views) == {"driver_stats", "driver_fresh", "route_stats"}
        stats = views["driver_stats"]
        assert stats["features"][0] == {"name": "conv_rate", "dtype": "Float64"}
        assert {"name": "recent", "dtype": "Array(Int64)"} in stats["features"]
        assert stats["source"] == "driver_push" and stats["push"] is True
        assert stats["owner"] == "rides@example.com" and stats["tags"] == {"team": "rides"}
        assert stats["freshness"]["watermark"].startswith("2026-01-02T00:00:00")
        assert stats["freshness"]["last_materialization"]["rows"] == 20
        assert views["route_stats"]["freshness"] == {"watermark": None, "last_materialization": None}
        assert views["route_stats"]["ttl_seconds"] is None and views["driver_fresh"]["ttl_seconds"] == 3600
        assert client.get("/catalog/views/driver_fresh").json()["name"] == "driver_fresh"
        services = client.get("/catalog/services").json()["services"]
        assert services == [
            {
                "name": "driver_activity",
                "features": ["driver_stats:conv_rate", "driver_stats:trips"],
                "description": "",
                "owner": "",
                "tags": {},
            }
        ]
        for path, name in [
            ("/catalog/views/driver_stat", "driver_stats"),
            ("/catalog/services/activity", None),
            ("/catalog/entities/drivr", "driver"),
        ]:
            r = client.get(path)
            assert r.status_code == 404
            if name:
                assert f"did you mean '{name}'" in r.json()["error"]
    store.close()


def test_an_empty_registry_has_an_empty_catalog_and_is_not_ready(tmp_path):
    make_repo(tmp_path, {"features.py": DEFINITIONS})
    store = FeatureStore(tmp_path)  # nothing applied
    with serve(store) as server, server.client() as client:
        assert client.get("/catalog/views").json() == {"views": []}
        r = client.get("/ready")
        assert r.status_code == 503 and "apply" in r.json()["error"]
        r = client.post(
            "/features/online", json={"features": ["driver_stats:trips"], "entities": [{"driver_id": 1}]}
        )
        assert r.status_code == 503 and "fs apply" in r.json()["error"]
    store.close()


def test_health_ready_metrics(sqlite_server_live):
    with sqlite_server_live.client() as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").json() == {
            "status": "ready",
            "online_store": "sqlite",
            "feature_views": 3,
        }
        client.post(
            "/features/online", json={"features": ["driver_stats:trips"], "entities": [{"driver_id": 1}]}
        )
        client.post(
            "/features/online", json={"features": ["driver_stats:nope"], "entities": [{"driver_id": 1}]}
        )
        client.get("/no/such/path")
        r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'fs_http_requests_total{endpoint="/features/online",method="POST",status="200"}' in text
    assert 'fs_http_requests_total{endpoint="/features/online",method="POST",status="404"}' in text
    assert 'fs_http_requests_total{endpoint="<unmatched>",method="GET",status="404"}' in text
    assert (
        'fs_http_request_duration_seconds_bucket{endpoint="/features/online",le="0.005",method="POST"}'
        in text
    )


def test_two_apps_in_one_process_keep_their_own_metrics(sqlite_store):
    with serve(sqlite_store) as a, serve(sqlite_store) as b:
        with a.client() as client:
            client.get("/health")
            client.get("/health")
        with b.client() as client:
            text = client.get("/metrics").text
    assert 'endpoint="/health"' not in text


def test_unexpected_errors_are_a_generic_500_and_extra_routers_mount(sqlite_store, caplog):
    router = APIRouter(tags=["extra"])

    @router.get("/boom", dependencies=[Depends(require("read"))])
    async def boom() -> dict:
        raise RuntimeError("secret internal detail")

    caplog.set_level(logging.ERROR, logger="featurestore.server")
    with serve(sqlite_store, routers=[router]) as server, server.client() as client:
        r = client.get("/boom")
        assert r.status_code == 500
        assert r.json() == {"error": "internal server error: the server logged the details"}
        assert "secret" not in r.text
        assert "/boom" in client.get("/openapi.json").json()["paths"]
        assert 'endpoint="/boom",method="GET",status="500"' in client.get("/metrics").text
    assert "secret internal detail" in caplog.text  # the traceback is in the server log


def test_protocol_level_mistakes(sqlite_store):
    with serve(sqlite_store, max_body_bytes=1000) as server, server.client() as client:
        r = client.post(
            "/features/online",
            content=b"{" + b" " * 2000 + b"}",
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413 and "1000 bytes" in r.json()["error"]

        def chunks():
            yield b'{"features": ["driver_stats:trips"], "entities": [' + b" " * 600
            yield b" " * 600 + b"]}"

        r = client.post("/features/online", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413  # no Content-Length: counted while reading
        r = client.get("/features/online")
        assert r.status_code == 405 and "error" in r.json()
        r = client.get("/nope")
        assert r.status_code == 404 and "/docs" in r.json()["error"]
        assert client.get("/docs").status_code == 200


@pytest.mark.slow
def test_serve_in_a_subprocess_with_two_workers(tmp_path):
    store = build_repo(tmp_path, "sqlite")
    store.close()
    port = free_port()
    shared = tmp_path / "metrics"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FS_METRICS_DIR": str(shared)}
    code = f"from featurestore.server.run import serve; serve({str(tmp_path)!r}, '127.0.0.1', {port}, 2)"
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        body = {"features": ["driver_stats:trips"], "entities": {"driver_id": [1, 2]}}
        while True:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/features/online", json=body, timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() - start < 30, "server did not start"
                time.sleep(0.05)
        assert r.status_code == 200 and r.json()["values"]["trips"] == [10, 20]
        while (
            len(list(shared.glob("worker-*.json"))) < 2
        ):  # both workers up (each writes a snapshot at start)
            assert proc.poll() is None and time.monotonic() - start < 30, "the second worker did not start"
            time.sleep(0.05)
        answered = 1 + sum(
            httpx.post(f"http://127.0.0.1:{port}/features/online", json=body, timeout=5).status_code == 200
            for _ in range(30)
        )  # a connection each: the workers share them
        # Whichever worker a scrape reaches, it counts every worker's lookups (theirs as of their
        # last snapshot, at most a second old): soon every scrape shows the same exact total.
        deadline = time.monotonic() + 15
        while True:
            seen = [
                _lookups_counted(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
                for _ in range(8)
            ]
            if seen == [answered] * 8 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert seen == [answered] * 8
        assert len(list(shared.glob("worker-*.json"))) == 2  # one snapshot per worker
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    log = out.decode()
    assert "no API keys configured" in log
    assert log.count("Started server process") == 2  # two workers


def _lookups_counted(metrics_text: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "fs_http_requests_total" and sample.labels == {
                "method": "POST",
                "endpoint": "/features/online",
                "status": "200",
            }:
                return sample.value
    return 0.0


def test_serve_with_workers_makes_and_removes_its_own_metrics_folder(tmp_path, monkeypatch):
    import uvicorn

    from featurestore.server import run

    build_repo(tmp_path, "sqlite").close()
    monkeypatch.delenv(run.METRICS_DIR_ENV, raising=False)
    monkeypatch.delenv(run.REPO_ENV, raising=False)  # serve() sets it for the workers: undone after the test
    seen = {}

    def fake_run(app, **options):  # what the workers would be started with
        seen["folder"] = Path(os.environ[run.METRICS_DIR_ENV])
        seen["existed"] = seen["folder"].is_dir()
        seen["workers"] = options["workers"]

    monkeypatch.setattr(uvicorn, "run", fake_run)
    run.serve(str(tmp_path), "127.0.0.1", free_port(), workers=3)
    assert seen["existed"] and seen["workers"] == 3
    assert not seen["folder"].exists() and run.METRICS_DIR_ENV not in os.environ

    kept = tmp_path / "kept"  # a folder of the caller's is used and left in place, emptied of old snapshots
    monkeypatch.setenv(run.METRICS_DIR_ENV, str(kept))
    kept.mkdir()
    (kept / "worker-1-aa.json").write_text("[]")
    (kept / "README").write_text("mine")
    run.serve(str(tmp_path), "127.0.0.1", free_port(), workers=2)
    assert seen["folder"] == kept and os.environ[run.METRICS_DIR_ENV] == str(kept)
    assert sorted(p.name for p in kept.iterdir()) == ["README"]
