"""UI pages of the model registry: every model (`/ui/models`), one model (`/ui/models/{name}`:
versions, aliases and their history, pending approvals, recent runs; the shadow comparison of
production and challenger, which scans the prediction log, is a part loaded after the page from
`/ui/models/{name}/shadow`), one version (`/ui/models/{name}/versions/{v}`), and the Approve /
Reject forms an approver posts (`POST /ui/models/{name}/versions/{v}/approve|reject`).

A decision goes through `store.models.approve` / `reject`, as the API's routes do: the registry
checks the role, moves the alias in the pipeline run's transaction, writes the audit entry and tells
the app's model server, and its errors are the API's (409: nothing pending or the alias moved since
the run; 403: a role too low), shown as an error page. The form is checked first (CSRF token and
Origin), and the role by the page's `Approver` dependency, so a reader's crafted POST changes nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from featurestore import FeatureStore
from featurestore.errors import MonitoringError, UnknownNameError
from featurestore.models.registry import MAX_VERSION, ModelVersion
from featurestore.monitoring.report import shadow_chart, window_text
from featurestore.monitoring.shadow import ShadowReport

from .access import Approver, Reader
from .cache import ttl_cache
from .index import registry_index, when
from .monitoring import DEFAULT_DAYS, DaysQuery, parse_days, window_of
from .render import page, partial, store_of
from .runs import outcome
from .session import check_form, read_form

router = APIRouter(include_in_schema=False)

RECENT_RUNS = 5
MAX_REASON = 2000  # as the API's ReviewRequest
Name = Annotated[str, Path(max_length=200)]
Version = Annotated[int, Path(ge=1, le=MAX_VERSION)]


def model_url(name: str, *parts: str) -> str:
    """The UI path of model `name`, with more path parts appended (`parts`)."""
    return "/".join([f"/ui/models/{quote(name, safe='')}", *parts])


@dataclass(frozen=True)
class Input:
    """One model input as the version page shows it: a feature of a view, or a request value."""

    name: str
    ref: str | None
    view: str | None
    feature: str | None


def _inputs(mv: ModelVersion) -> list[Input]:
    out = []
    for i in mv.inputs:
        view, _, feature = (i.ref or "").partition(":")
        out.append(Input(i.name, i.ref, view or None, feature or None))
    return out


@dataclass(frozen=True)
class Pending:
    """A candidate awaiting approval: the registry's pending entry, its metrics side by side, and
    the metric its run's policy decides on."""

    entry: dict[str, Any]
    metrics: list[tuple[str, Any, Any]]  # (metric, candidate, champion)
    decides: str | None

    @property
    def version(self) -> int | None:
        version = self.entry.get("version")
        return version if isinstance(version, int) else None


def _pending(store: FeatureStore, name: str, version: int | None = None) -> list[Pending]:
    out = []
    for entry in store.models.pending(name):
        if version is not None and entry.get("version") != version:
            continue
        candidate = entry["candidate"].get("metrics") or {}
        champion = entry["champion"].get("metrics") or {}
        decides = None
        try:
            decides = (store.pipelines.get_run(entry["run"]).record.get("policy") or {}).get("metric")
        except UnknownNameError:  # the run's record is gone: the entry still says what it holds
            pass
        names = sorted({*candidate, *champion}, key=lambda m: (m != decides, m))
        metrics = [(m, candidate.get(m), champion.get(m)) for m in names]
        out.append(Pending(entry, metrics, decides))
    return out


def _done(query: dict[str, str], aliases: dict[str, int]) -> str | None:
    """The confirmation of the decision the page was sent back from, in words, from the aliases
    as they are now (the query only says which version and alias to talk about)."""
    done, alias = query.get("done"), query.get("alias", "")
    try:
        version = int(query.get("version", ""))
    except ValueError:
        return None
    if done == "approved":  # only what the aliases confirm: a crafted link claims nothing
        target = alias or "production"
        return f"v{version} is now {target}." if aliases.get(target) == version else None
    if done == "rejected":
        if alias in aliases:
            return f"v{version} was rejected: {alias} stays at v{aliases[alias]}."
        return f"v{version} was rejected."
    return None


# -- pages ------------------------------------------------------------------------------------------


@router.get("/ui/models")
def models_page(request: Request, viewer: Reader) -> HTMLResponse:
    """GET /ui/models: every model and what waits for approval."""
    store = store_of(request)
    pending = store.models.pending()
    waiting = Counter(p["model"] for p in pending)
    index = registry_index(request)
    models = []
    for name in index.model_names:
        versions = index.versions_of(name)  # newest first
        latest = versions[0]
        aliases = {a: v.version for v in versions for a in v.aliases}
        models.append(
            {
                "name": name,
                "latest_version": latest.version,
                "versions": len(versions),
                "feature_service": latest.feature_service,
                "description": latest.description,
                "aliases": dict(sorted(aliases.items())),
                "registered_by": latest.registered_by,
                "registered_at": latest.registered_at,
                "flavor": latest.flavor,
                "pending": waiting[name],
            }
        )
    return page(
        request,
        viewer,
        "models.html.j2",
        title="Models",
        nav="models",
        models=models,
        pending=pending,
        q=request.query_params.get("q", "")[:200],
        when=when,
    )


@router.get("/ui/models/{name}")
def model_page(request: Request, viewer: Reader, name: Name) -> HTMLResponse:
    """GET /ui/models/{name}: versions, aliases, history, pending approvals, shadow."""
    store = store_of(request)
    versions = store.models.versions(name)  # an unknown model: UnknownNameError -> 404
    aliases = store.models.aliases(name)
    history = list(reversed(store.models.history(name)))
    try:
        runs = store.pipelines.runs(name, limit=RECENT_RUNS)
    except UnknownNameError:  # no pipeline and no run: a model registered by hand
        runs = []
    return page(
        request,
        viewer,
        "model.html.j2",
        title=f"Model {name}",
        nav="models",
        name=name,
        latest=versions[-1],
        versions=list(reversed(versions)),
        aliases=aliases,
        history=history,
        pending=_pending(store, name),
        runs=[(r, *outcome(r)) for r in runs],
        has_runs=bool(runs) or name in store.catalog.pipelines,
        done=_done(dict(request.query_params), aliases),
        when=when,
    )


@router.get("/ui/models/{name}/shadow")
def shadow_partial(
    request: Request, viewer: Reader, name: Name, days_query: DaysQuery = str(DEFAULT_DAYS)
) -> HTMLResponse:
    """Production against its challenger over the last `days` (a scan of the prediction log: a part
    of the model page, loaded after it; kept a minute per app for the same aliases and window)."""
    days = parse_days(days_query)
    store = store_of(request)
    aliases = store.models.aliases(name)  # an unknown model: UnknownNameError -> 404
    win = window_of(days)

    def compare() -> tuple[ShadowReport | None, str]:
        try:
            return store.monitor.shadow(name, win.start, win.end), ""
        except MonitoringError as e:  # no production or no challenger alias (any more)
            return None, str(e)

    key = (name, tuple(sorted(aliases.items())), days)
    shadow, reason = ttl_cache(request, "shadow").get(key, compare)
    return partial(
        request,
        viewer,
        "model_shadow.html.j2",
        shadow=shadow,
        shadow_chart=shadow_chart(shadow),
        reason=reason,
        window=window_text(win),
    )


@router.get("/ui/models/{name}/versions/{version}")
def version_page(request: Request, viewer: Reader, name: Name, version: Version) -> HTMLResponse:
    """GET /ui/models/{name}/versions/{version}: one version's record."""
    store = store_of(request)
    mv = store.models.get(name, version=version)  # unknown: UnknownNameError -> 404
    run = mv.tags.get("pipeline_run", "")
    return page(
        request,
        viewer,
        "model_version.html.j2",
        title=f"{name} v{version}",
        nav="models",
        name=name,
        mv=mv,
        inputs=_inputs(mv),
        pending=_pending(store, name, version),
        run=int(run) if run.isdigit() else None,
        when=when,
    )


# -- decisions --------------------------------------------------------------------------------------


async def _decide(request: Request, viewer: Any, name: str, version: int, decision: str) -> Response:
    """Check the form, then approve or reject in the threadpool; back to the model page on success."""
    form = await read_form(request)
    check_form(request, viewer, form)
    reason = form.get("reason", "").strip()
    if len(reason) > MAX_REASON:
        raise HTTPException(422, f"a reason is at most {MAX_REASON} characters")
    store = store_of(request)
    entry = next(
        (p for p in await run_in_threadpool(store.models.pending, name) if p.get("version") == version),
        None,
    )
    act = store.models.approve if decision == "approve" else store.models.reject
    # The registry moves the alias (approve), audits, and tells the app's model server.
    await run_in_threadpool(act, name, version, reason, viewer.name, viewer.role)
    query = {"done": "approved" if decision == "approve" else "rejected", "version": str(version)}
    if entry is not None and entry.get("alias"):
        query["alias"] = str(entry["alias"])
    return RedirectResponse(f"{model_url(name)}?{urlencode(query)}", status_code=303)


@router.post("/ui/models/{name}/versions/{version}/approve")
async def approve(request: Request, viewer: Approver, name: Name, version: Version) -> Response:
    """POST .../approve: an approver moves the pending candidate's alias (CSRF-checked)."""
    return await _decide(request, viewer, name, version, "approve")


@router.post("/ui/models/{name}/versions/{version}/reject")
async def reject(request: Request, viewer: Approver, name: Name, version: Version) -> Response:
    """POST .../reject: an approver rejects the pending candidate (CSRF-checked)."""
    return await _decide(request, viewer, name, version, "reject")


__all__ = ["model_url", "router"]
