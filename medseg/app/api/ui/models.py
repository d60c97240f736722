"""Models: the versions with their gate reference and results, metadata, model card and shadow
comparison; promotion and rollback with a reason (ml-engineer), through the API's own routes, so a
click is the same audited operation as ``medseg models promote|rollback`` and ``POST /models/...``."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request

from audit.query import AuditFilter, query
from medseg.app.api.deps import ServiceDep
from medseg.app.api.errors import audit_refusal, problem_for
from medseg.app.api.routes import models as api
from medseg.app.api.ui.render import page
from medseg.app.api.ui.session import MlEngineer, Viewer, check_csrf
from medseg.core.exceptions import MedsegError, RegistryError
from medseg.models.manifest import ModelManifest

router = APIRouter(prefix="/ui", include_in_schema=False)
GATE_ACTIONS = ("model.promoted", "model.rolled_back", "model.gate_failed", "model.reference_recorded")


def _versions(service, caller) -> list[dict]:
    name = service.context.default_model_name
    active, shadow = service.registry.active(name), service.registry.shadow(name)
    # the gate's outcomes are in the audit trail: read (and audited) for this model's versions only
    service.events("audit.read", actor=caller.actor, what="events", filter={"action": list(GATE_ACTIONS),
                                                                             "model": f"{name}:*"}, door="ui")
    out = []
    for version in reversed(service.registry.versions(name)):
        gates = sorted((e for action in GATE_ACTIONS for e in query(service.audit_log, AuditFilter(
            action=action, model=f"{name}:{version}", limit=1000))), key=lambda e: e.seq, reverse=True)
        folder = service.registry.path(name, version)
        m = ModelManifest.load(folder)
        card = folder / "MODEL_CARD.md"
        out.append({"version": version, "active": version == active, "shadow": version == shadow, "manifest": m,
                    "card": card.read_text(encoding="utf-8") if card.is_file() else "",
                    "gates": gates[:5],
                    "shadow_report": service.context.shadow.compare(f"{name}/{version}") if version != active else None})
    return out


def _page(request: Request, service, caller, status_code: int = 200, **extra):
    name = service.context.default_model_name
    return page(request, "models.html", caller, status_code=status_code, name=name,
                active=service.registry.active(name), versions=_versions(service, caller),
                history=[h.as_dict() for h in reversed(service.registry.history(name))][:30], **extra)


@router.get("/models")
def models(request: Request, service: ServiceDep, caller: Viewer):
    return _page(request, service, caller)


def _refused(request: Request, service, caller, exc: MedsegError):
    """The page again, with the refusal (a gate that failed, a breach without an override...)."""
    problem = audit_refusal(request, problem_for(exc), code=exc.code)
    return _page(request, service, caller, status_code=problem.status, error=problem.detail)


def _check_current(name: str, service, shown: str) -> None:
    """The form was made for the version active when the page was loaded: a reload of the result
    page, or a colleague's switch meanwhile, must not roll back or promote a second time."""
    active = service.registry.active(name)
    if shown != active:
        raise RegistryError(f"the active version changed since this page was loaded ({shown} then, {active} now): "
                          "nothing was done; look at the page again before you act", code="registry.stale_page")


@router.post("/models/{name}/{version}/promote")
def promote(request: Request, name: api.Name, version: api.Version, service: ServiceDep, caller: MlEngineer,
            reason: str = Form(..., min_length=1, max_length=500), override_breach: str = Form("", max_length=500),
            shown_active: str = Form(""), csrf: str = Form("")):
    check_csrf(request, csrf)
    body = api.PromoteRequest(reason=reason, override_breach=override_breach.strip() or None)
    try:
        _check_current(name, service, shown_active)
        done = api.promote_model(name, version, body, service, caller)
    except MedsegError as exc:
        return _refused(request, service, caller, exc)
    return _page(request, service, caller, done=f"{name} {done['active']} is active (was {done['previous']}).")


@router.post("/models/{name}/rollback")
def rollback(request: Request, name: api.Name, service: ServiceDep, caller: MlEngineer,
             reason: str = Form(..., min_length=1, max_length=500),
             to: str = Form("", pattern=r"^(\d+\.\d+\.\d+([.-][A-Za-z0-9.]+)?)?$"), reprocess: bool = Form(False),
             shown_active: str = Form(""), csrf: str = Form("")):
    check_csrf(request, csrf)
    try:
        _check_current(name, service, shown_active)
        body = api.RollbackRequest(reason=reason, to=to or None, reprocess=reprocess)
        report = api.rollback_model(name, body, service, caller)
    except MedsegError as exc:
        return _refused(request, service, caller, exc)
    return _page(request, service, caller, report=report,
                 done=f"Rolled back {name} {report['rolled_back']} to {report['active']}.")
