"""The Runs pages (`/ui/runs`, `/ui/runs/{id}`), the audit trail page (`/ui/audit`, admin only) and
the `fs ui` command (its options, the serve call it makes, and one real server it starts)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from featurestore import FeatureStore
from featurestore.pipelines import PipelineRun
from featurestore.server import run as server_run
from featurestore.server.ui.runs import outcome, target_link
from tests.redis_server import free_port
from tests.ui.conftest import KEYS, ui_client

ADMIN = {"X-API-Key": "key-ada-admin-000000"}
READER = {"X-API-Key": "key-rita-read-000000"}
ODD_MODEL = "odd model <b>&"


def main_of(html: str) -> str:
    return html.split('<main id="main">', 1)[1].split("</main>", 1)[0]


def add_failed_run(repo: Path) -> int:
    """A failed run of a model with an odd name, its error holding markup (it must be escaped)."""
    store = FeatureStore(repo)
    run = store.registry.backend.add_pipeline_run(
        ODD_MODEL,
        {
            "status": "failed",
            "step": "train",
            "trigger": "monitor: drift",
            "error": "ValueError: <script>alert(1)</script> in train()",
            "reasons": [],
        },
        "tester",
    )
    store.close()
    return int(run["id"])


# -- runs -------------------------------------------------------------------------------------------


def test_runs_page_lists_pipeline_runs_with_their_outcome_and_the_materializations(demo_repo):
    with ui_client(demo_repo) as client:
        r = client.get("/ui/runs")
    assert r.status_code == 200
    body = main_of(r.text)
    assert body.count("<h1>") == 1 and "Pipeline runs" in body
    # the demo's retrain: run 1, v2 compared with v1, waiting for an approver
    assert '<a href="/ui/runs/1">Run 1</a>' in body
    assert '<span class="status status-warn">pending approval</span>' in body
    assert 'href="/ui/models/trip_completion/versions/2">v2</a>' in body
    assert 'href="/ui/models/trip_completion/versions/1">v1</a>' in body
    assert re.search(r"accuracy 0\.81\d\d vs 0\.81\d\d", body)
    # materialization runs, newest first, each view linked
    assert "Materialization runs" in body
    assert 'href="/ui/views/driver_trip_activity">driver_trip_activity</a>' in body
    assert "210,000" in body  # the rows it wrote
    assert 'option value="trip_completion"' in body  # the model filter offers the pipelines' models


def test_runs_page_filters_by_model_quotes_names_and_escapes_them(demo_repo):
    add_failed_run(demo_repo)
    with ui_client(demo_repo) as client:
        everything = main_of(client.get("/ui/runs").text)
        only = client.get("/ui/runs", params={"model": ODD_MODEL})
        unknown = client.get("/ui/runs?model=trip_complet")
    # newest first: the failed run (2) before the demo's (1)
    assert everything.index('href="/ui/runs/2"') < everything.index('href="/ui/runs/1"')
    assert '<span class="status status-failed">failed</span>' in everything
    assert 'href="/ui/models/odd%20model%20%3Cb%3E%26"' in everything  # quoted in links
    assert "odd model &lt;b&gt;&amp;" in everything and "<b>&" not in everything  # escaped in text
    assert only.status_code == 200
    body = main_of(only.text)
    assert 'href="/ui/runs/2"' in body and 'href="/ui/runs/1"' not in body
    assert unknown.status_code == 404 and "text/html" in unknown.headers["content-type"]
    assert "trip_completion" in unknown.text  # the error suggests the model meant


def test_run_page_shows_every_part_of_a_run(demo_repo):
    with ui_client(demo_repo) as client:
        r = client.get("/ui/runs/1")
    assert r.status_code == 200
    body = main_of(r.text)
    assert body.count("<h1>") == 1 and "Run 1 of trip_completion" in body
    assert "v2 passed and waits for approval to become production" in body  # the summary sentence
    assert "guard roc_auc" in body and "at least 0 required" in body  # the reasons, each listed
    assert body.count('<th scope="col"') >= 5
    assert "<td>decides</td>" in body and "guard (at most 0.02 worse)" in body  # metrics compared
    assert 'href="/ui/training-sets/trip_completion__run1"' in body
    assert "/ui/lineage?focus=training_set:trip_completion__run1" in body
    assert "waits for an approver" in body and "review version 2" in body  # pending: no review yet
    assert "2,857" in body  # the spine's rows
    assert "&#34;training_fingerprint&#34;" in body  # every recorded field, as JSON


def test_run_page_shows_the_approval_once_decided_and_escapes_a_failed_runs_error(demo_repo):
    store = FeatureStore(demo_repo)
    store.models.approve("trip_completion", 2, reason="better <and> safe", actor="abe")
    store.close()
    failed = add_failed_run(demo_repo)
    with ui_client(demo_repo) as client:
        approved = main_of(client.get("/ui/runs/1").text)
        broken = client.get(f"/ui/runs/{failed}")
        missing = client.get("/ui/runs/999")
        zero = client.get("/ui/runs/0")
        huge = client.get(f"/ui/runs/{2**70}")
        word = client.get("/ui/runs/abc")
    assert '<span class="status status-ok">approved</span>' in approved
    assert "<dd>abe</dd>" in approved and "better &lt;and&gt; safe" in approved
    assert broken.status_code == 200
    body = main_of(broken.text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>" not in body
    assert '<span class="status status-failed">failed</span>' in body
    assert "No metric was computed" in body
    assert missing.status_code == 404 and "there is no pipeline run 999" in missing.text
    assert "text/html" in missing.headers["content-type"]
    for answer in (zero, huge, word):
        assert answer.status_code == 422 and "text/html" in answer.headers["content-type"]


@pytest.mark.parametrize(
    ("status", "decision", "label", "badge"),
    [
        ("succeeded", "promoted", "promoted", "status-ok"),
        ("succeeded", "approved", "approved", "status-ok"),
        ("succeeded", "pending_approval", "pending approval", "status-warn"),
        ("succeeded", "rejected", "rejected", "status-failed"),
        ("succeeded", "declined", "declined", "status-failed"),
        ("failed", None, "failed", "status-failed"),
        ("running", None, "running", "status-warn"),
        ("skipped", "skipped", "skipped", "status-none"),
        ("abandoned", None, "abandoned", "status-none"),
        ("succeeded", "something_new", "something new", "status-none"),
    ],
)
def test_each_outcome_has_its_label_and_badge(status, decision, label, badge):
    run = PipelineRun(1, "m", status, decision, "finished", "2026-01-01T00:00:00+00:00", "")
    assert outcome(run) == (label, badge)


# -- audit ------------------------------------------------------------------------------------------


def test_audit_page_is_for_admins_filters_validates_and_is_itself_audited(demo_repo):
    with ui_client(demo_repo, KEYS) as client:
        r = client.get("/ui/audit", headers=ADMIN)
        only = client.get("/ui/audit?action=model_register&limit=1", headers=ADMIN)
        reader = client.get("/ui/audit", headers=READER)
        bad = [client.get(f"/ui/audit?limit={n}", headers=ADMIN) for n in ("0", "1001", "many")]
    assert r.status_code == 200
    body = main_of(r.text)
    assert body.count("<h1>") == 1
    for col in ("When", "Actor", "Action", "Target", "Detail"):
        assert f'<th scope="col">{col}</th>' in body
    assert "approval_requested" in body and "model_register" in body and "apply" in body
    assert '<code class="detail">{&#34;champion&#34;:1,&#34;run&#34;:1,&#34;version&#34;:2}</code>' in body
    # newest first: the retrain's approval request comes before the first apply
    assert body.index(">approval_requested<") < body.index(">apply<")
    assert '<a href="/ui/models/trip_completion">model:trip_completion@production</a>' in body
    rows = main_of(only.text).split("<tbody>", 1)[1].count("<tr>")
    assert rows == 1 and "model_register" in only.text and "approval_requested" not in main_of(only.text)
    assert reader.status_code == 403 and "admin" in reader.text
    for answer in bad:
        assert answer.status_code == 422 and "limit" in answer.text
    store = FeatureStore(demo_repo)
    reads = store.registry.audit_log("read_audit", 10)
    store.close()
    assert len(reads) == 2  # the two pages the admin saw, not the refused ones
    assert reads[0]["actor"] == "ada" and reads[0]["target"] == "audit"
    assert reads[0]["detail"] == {"action": "model_register", "limit": 1, "via": "ui"}


def test_audit_targets_link_to_their_pages():
    assert target_link("model:trip_completion@production") == "/ui/models/trip_completion"
    assert target_link("training_set:a b") == "/ui/training-sets/a%20b"
    assert target_link("definitions") is None and target_link("audit") is None
    assert target_link("model:") is None


# -- fs ui ------------------------------------------------------------------------------------------


def test_fs_ui_parses_its_options_and_serves_with_them(monkeypatch):
    from featurestore.cli import cli

    calls = []
    monkeypatch.setattr(server_run, "serve", lambda *a, **k: calls.append((a, k)))
    runner = CliRunner()
    done = runner.invoke(cli, ["--repo", "somewhere", "ui"])
    assert done.exit_code == 0, done.output
    assert "http://127.0.0.1:6566/ui/" in done.output
    done = runner.invoke(cli, ["--repo", "r", "ui", "--host", "0.0.0.0", "--port", "7000", "--no-open"])
    assert done.exit_code == 0, done.output
    assert "http://127.0.0.1:7000/ui/" in done.output
    assert calls == [
        (("somewhere", "127.0.0.1", 6566), {"open_browser": True}),
        (("r", "0.0.0.0", 7000), {"open_browser": False}),
    ]
    assert runner.invoke(cli, ["ui", "--port", "x"]).exit_code == 2
    assert runner.invoke(cli, ["ui", "--workers", "2"]).exit_code == 2


def test_ui_url_names_a_reachable_address():
    assert server_run.ui_url("127.0.0.1", 6566) == "http://127.0.0.1:6566/ui/"
    assert server_run.ui_url("0.0.0.0", 80) == "http://127.0.0.1:80/ui/"
    assert server_run.ui_url("::", 8080) == "http://[::1]:8080/ui/"
    assert server_run.ui_url("features.internal", 1) == "http://features.internal:1/ui/"


def test_opening_the_browser_never_blocks_nor_fails(monkeypatch, capfd):
    import socket
    import webbrowser

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    port = listening.getsockname()[1]
    opened = []
    try:
        # no display and no $BROWSER: no browser is started (it would be a text one in the terminal)
        for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(sys, "platform", "linux")
        monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
        server_run.open_when_listening("http://x/ui/", "127.0.0.1", port).join(10)
        assert opened == [] and "No browser to open here: go to http://x/ui/" in capfd.readouterr().err

        monkeypatch.setenv("DISPLAY", ":0")  # a display, and a browser that fails
        monkeypatch.setattr(webbrowser, "open", lambda url: 1 / 0)
        thread = server_run.open_when_listening("http://x/ui/", "127.0.0.1", port)
        thread.join(10)
        assert not thread.is_alive() and "No browser to open here" in capfd.readouterr().err

        monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
        server_run.open_when_listening("http://x/ui/", "0.0.0.0", port).join(10)
        assert opened == ["http://x/ui/"]
    finally:
        listening.close()
    # nothing listens: it gives up after its wait, opening nothing
    server_run.open_when_listening("http://x/ui/", "127.0.0.1", port, wait_seconds=0.3).join(10)
    assert opened == ["http://x/ui/"]


def test_fs_ui_starts_the_server_and_opens_the_ui_in_the_browser(demo_repo, tmp_path):
    port = free_port()
    seen = tmp_path / "browser-was-asked-for.txt"
    browser = tmp_path / "browser.sh"  # what $BROWSER names: it notes the URL it was given
    browser.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {seen}\n')
    browser.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FS_") and k != "DISPLAY"}
    env["BROWSER"] = str(browser)
    fs = Path(sys.executable).parent / "fs"
    log = tmp_path / "fs-ui.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(fs), "--repo", str(demo_repo), "ui", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"fs ui exited:\n{log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui/", timeout=5) as answer:
                    assert answer.status == 200 and "text/html" in answer.headers["content-type"]
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, f"fs ui never answered:\n{log.read_text()[-3000:]}"
                time.sleep(0.2)
        while not seen.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert seen.read_text() == f"http://127.0.0.1:{port}/ui/"
        assert f"featurestore web UI: http://127.0.0.1:{port}/ui/" in log.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
