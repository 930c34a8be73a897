"""UI pages: pipeline runs and their decisions (`/ui/runs`, `/ui/runs/{id}`), the latest
materialization runs, and the audit trail (`/ui/audit`, admin only).

Runs come from `store.pipelines` (the newest 100, or one by id), materialization runs from
`store.registry.runs(limit=50)` (only the newest are read), the audit trail from
`store.registry.audit_log`. Reading the audit trail here is recorded in it, as `GET /admin/audit`
does ("read_audit").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import HTMLResponse

from featurestore.pipelines import PipelineRun

from .access import Admin, Reader
from .render import page, store_of

router = APIRouter(include_in_schema=False)

RUNS_SHOWN = 100
MATERIALIZATIONS_SHOWN = 50
AUDIT_DEFAULT = 100
AUDIT_MAX = 1000  # entries on one page (the API's GET /admin/audit takes up to 10000)
MAX_RUN_ID = 2**63 - 1  # a registry row id: larger ones are no run (and no SQLite integer)

# A run's outcome: (label, badge class). The label says it in words; the colour only repeats it.
_DECISIONS = {
    "promoted": ("promoted", "status-ok"),
    "approved": ("approved", "status-ok"),
    "pending_approval": ("pending approval", "status-warn"),
    "rejected": ("rejected", "status-failed"),
    "declined": ("declined", "status-failed"),
}
_STATUSES = {
    "failed": ("failed", "status-failed"),
    "running": ("running", "status-warn"),
    "skipped": ("skipped", "status-none"),
    "abandoned": ("abandoned", "status-none"),
}
# Audit targets of these kinds have a page of their own.
_TARGET_PAGES = {
    "model": "/ui/models/",
    "training_set": "/ui/training-sets/",
    "view": "/ui/views/",
    "service": "/ui/services/",
    "feature_service": "/ui/services/",
}


def _when(value: Any) -> datetime | None:
    """An ISO time of a run record as a datetime (None when missing or not a time)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    try:
        found = datetime.fromisoformat(value)
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=timezone.utc)


def outcome(run: PipelineRun) -> tuple[str, str]:
    """The label and badge class of what a run came to."""
    if run.status in _STATUSES:
        return _STATUSES[run.status]
    if run.decision in _DECISIONS:
        return _DECISIONS[run.decision]
    return (run.decision or run.status).replace("_", " "), "status-none"


@dataclass(frozen=True)
class RunRow:
    """A pipeline run as the pages show it."""

    run: PipelineRun
    label: str
    badge: str
    started: datetime | None
    metric: str | None
    candidate_value: float | None
    champion_value: float | None

    @classmethod
    def of(cls, run: PipelineRun) -> RunRow:
        label, badge = outcome(run)
        cand, champ = run.metric_pair()
        metric = (run.record.get("policy") or {}).get("metric")
        return cls(run, label, badge, _when(run.started_at), metric, cand, champ)


@dataclass(frozen=True)
class MetricRow:
    """One metric of a pipeline run: candidate, champion and the role it played."""

    name: str
    candidate: float | None
    champion: float | None
    role: str  # "decides", "guard (at most X worse)" or ""

    @property
    def difference(self) -> float | None:
        if isinstance(self.candidate, int | float) and isinstance(self.champion, int | float):
            return float(self.candidate) - float(self.champion)
        return None


def _metrics(run: PipelineRun) -> list[MetricRow]:
    """Every metric of the candidate or the champion, the policy's first, then its guards, then the rest."""
    policy = run.record.get("policy") or {}
    cand = (run.record.get("candidate") or {}).get("metrics") or {}
    champ = (run.record.get("champion") or {}).get("metrics") or {}
    guards = policy.get("guards") or {}
    decides = policy.get("metric")
    names = sorted(set(cand) | set(champ), key=lambda n: (n != decides, n not in guards, n))
    rows = []
    for name in names:
        if name == decides:
            role = "decides"
        elif name in guards:
            role = f"guard (at most {guards[name]} worse)"
        else:
            role = ""
        rows.append(MetricRow(name, cand.get(name), champ.get(name), role))
    return rows


def _json(value: Any, indent: int | None = None) -> str:
    if indent is None:
        return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(value, sort_keys=True, default=str, indent=indent, ensure_ascii=False)


def target_link(target: str) -> str | None:
    """The UI page of an audit entry's target ("model:trip_completion@production"), if it has one."""
    kind, sep, name = target.partition(":")
    base = _TARGET_PAGES.get(kind)
    if not sep or base is None or not name:
        return None
    return base + quote(name.split("@")[0], safe="")


@router.get("/ui/runs")
def runs_page(
    request: Request,
    viewer: Reader,
    model: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """GET /ui/runs: pipeline runs (by `?model=`) and the latest materializations."""
    store = store_of(request)
    model = model or None
    runs = store.pipelines.runs(model, limit=RUNS_SHOWN)  # an unknown model: UnknownNameError -> 404
    models = sorted({*store.pipelines.names(), *(r.model for r in runs), *([model] if model else [])})
    materializations = list(reversed(store.registry.runs(limit=MATERIALIZATIONS_SHOWN)))
    return page(
        request,
        viewer,
        "runs.html.j2",
        title=f"Runs of {model}" if model else "Runs",
        nav="runs",
        model=model,
        models=models,
        rows=[RunRow.of(r) for r in runs],
        limit=RUNS_SHOWN,
        materializations=materializations,
        materializations_shown=MATERIALIZATIONS_SHOWN,
    )


@router.get("/ui/runs/{run_id}")
def run_page(
    request: Request, viewer: Reader, run_id: Annotated[int, Path(ge=1, le=MAX_RUN_ID)]
) -> HTMLResponse:
    """GET /ui/runs/{id}: one pipeline run."""
    run = store_of(request).pipelines.get_run(run_id)  # none: UnknownNameError -> 404
    record = run.record
    review = record.get("review") or None
    return page(
        request,
        viewer,
        "runs_detail.html.j2",
        title=f"Run {run.id} of {run.model}",
        nav="runs",
        row=RunRow.of(run),
        run=run,
        summary=run.summary(),
        metrics=_metrics(run),
        policy=record.get("policy") or {},
        spine=record.get("spine_range") or {},
        inputs=record.get("inputs") or {},
        params=record.get("params") or {},
        code=record.get("pipeline") or {},
        training_set=record.get("training_set"),
        fingerprint=record.get("training_fingerprint"),
        finished=_when(record.get("finished_at")),
        updated=_when(run.updated_at),
        review=review,
        reviewed=_when((review or {}).get("at")),
        when=_when,
        as_json=_json,
        everything=_json(run.to_dict(), indent=2),
    )


@router.get("/ui/audit")
def audit_page(
    request: Request,
    viewer: Admin,
    action: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=AUDIT_MAX)] = AUDIT_DEFAULT,
) -> HTMLResponse:
    """GET /ui/audit: the audit trail, for admins (reading it is recorded)."""
    registry = store_of(request).registry
    action = action.strip() if action else None
    entries = registry.audit_log(action or None, limit)
    # Who looked, and at what: as GET /admin/audit records it.
    registry.audit("read_audit", "audit", {"action": action, "limit": limit, "via": "ui"}, actor=viewer.name)
    rows = [
        {
            "when": _when(e.get("at")),
            "actor": e.get("actor", ""),
            "action": e.get("action", ""),
            "target": e.get("target", ""),
            "link": target_link(str(e.get("target", ""))),
            "detail": _json(e.get("detail") or {}),
        }
        for e in entries
    ]
    return page(
        request,
        viewer,
        "audit.html.j2",
        title="Audit trail",
        nav="audit",
        action=action or "",
        limit=limit,
        limit_max=AUDIT_MAX,
        rows=rows,
    )
