"""The landing page, the on-call overview, the login and the logout."""

from __future__ import annotations

import datetime as dt
import shutil
import statistics
from collections import Counter

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from medseg.app.api.deps import ServiceDep, anonymous
from medseg.app.api.ui import charts
from medseg.app.api.ui.render import login_page, page
from medseg.app.api.ui.session import Anyone, clear_session, safe_next, set_session
from medseg.app.auth.roles import READERS
from medseg.db import utcnow
from medseg.quality.alerts import payload

router = APIRouter(prefix="/ui", include_in_schema=False)
WINDOW = dt.timedelta(hours=24)


@router.get("/login")
def login_form(request: Request, service: ServiceDep, next: str = "/ui/"):
    return login_page(request, service, next)


@router.post("/login")
def login(request: Request, service: ServiceDep, token: str = Form("", max_length=8192), next: str = Form("/ui/")):
    principal = service.authenticator.authenticate(token.strip()) if token.strip() else None
    if principal is None:
        service.events("ui.login", outcome="failure", actor=anonymous(request), method="token", reason="token not valid")
        return login_page(request, service, next, "That token is not valid (unknown, revoked or expired).", 401)
    service.events("ui.login", actor=principal.actor, method="token", roles=sorted(r.value for r in principal.roles))
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session(response, request, token.strip())
    return response


@router.post("/logout")
def logout(request: Request, service: ServiceDep, caller: Anyone):
    service.events("ui.logout", actor=caller.actor)
    response = RedirectResponse("/ui/login", status_code=303)
    clear_session(response)
    return response


@router.get("/")
def overview(request: Request, service: ServiceDep, caller: Anyone):
    if not caller.holds(READERS):  # an auditor or an admin: only their own page(s) in the navigation
        return page(request, "home.html", caller)
    return page(request, "overview.html", caller, **on_call(service))


def on_call(service) -> dict:
    """Everything the on-call engineer looks at first, from the job table, the registry, the
    monitoring store and the spool's disk."""
    now = utcnow()
    since = now - WINDOW
    activity = service.jobs.activity(since)
    recent = activity["recent"]
    finished = [j for j in recent if j.finished_at and j.finished_at >= since]
    done = [j for j in finished if j.seg_sop_uid]
    name = service.context.default_model_name
    history = service.registry.history(name)
    return {
        "readiness": service.readiness(), "problem": service.cannot_continue(), "role": service.role,
        "model": name, "active": service.registry.active(name),
        "switches": [h.as_dict() for h in history if h.at >= since and h.action in ("rollback", "promote")],
        "fallbacks": [j for j in done if (j.result or {}).get("fallback")],
        "by_state": activity["by_state"],
        "failed": sorted((j for j in finished if j.state == "failed"), key=lambda j: j.finished_at, reverse=True)[:20],
        "disk": _disk(service),
        "alerts": [payload(a) for a in service.monitor.store.alerts("firing")],
        "chart": charts.svg(_throughput(done, since), span=(_hour(since), _hour(now) + dt.timedelta(hours=1))),
    }


def _disk(service) -> dict:
    spool = service.settings.service.spool_dir
    usage = shutil.disk_usage(spool if spool.exists() else spool.parent)
    floor = service.settings.node.disk_floor_mb * 2**20
    return {"free_gb": usage.free / 2**30, "total_gb": usage.total / 2**30, "floor_gb": floor / 2**30,
            "ok": usage.free >= floor}


def _hour(when: dt.datetime) -> dt.datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def _throughput(done, since: dt.datetime) -> list[charts.Panel]:
    """Studies segmented per hour, and the median turnaround (received to SEG written) per hour."""
    hours = [_hour(since) + dt.timedelta(hours=h) for h in range(25)]
    per_hour = Counter(_hour(j.finished_at) for j in done)
    turnaround: dict[dt.datetime, list[float]] = {}
    for j in done:
        turnaround.setdefault(_hour(j.finished_at), []).append(
            (j.finished_at - j.created_at).total_seconds())
    times = sorted(turnaround)
    return [charts.Panel("Studies segmented per hour (last 24 h)",
                         bars=([h for h in hours if per_hour[h]], [per_hour[h] for h in hours if per_hour[h]], 1 / 24),
                         ylabel="studies"),
            charts.Panel("Median turnaround per hour: received to SEG written",
                         lines=[("median", [t + dt.timedelta(minutes=30) for t in times],
                                 [statistics.median(turnaround[t]) for t in times])],
                         ylabel="seconds")]
