"""The dashboard: server-rendered pages under ``/ui`` for the people who run the service.

=============  ===========================  ===========================================================
page           who (roles)                  what
=============  ===========================  ===========================================================
Overview       viewer, radiologist, ml-eng.  readiness, active model, fallbacks and switches in 24 h,
                                            jobs by state, throughput and turnaround, failed jobs,
                                            disk against the floor, firing alerts
Studies        same                         paged list filtered by state, model, day, calling AE;
                                            one study: audit timeline, series decisions, lesion
                                            tables, overlay thumbnails (PNG, mask outline on the CT)
Models         same; actions ml-engineer    versions, gate reference and outcomes, manifest, model
                                            card, shadow comparison; promote / roll back with a reason
Quality        same                         Dice, FN rate, lesion sensitivity over time with SLO lines
                                            and confidence bands; drift; alerts with evidence
Worklist       radiologist                  studies to re-review; closing one by submitting a review
Audit          auditor                      search, verify, export (JSON lines, ATNA)
=============  ===========================  ===========================================================

Same app, same authentication and roles as the API (:mod:`.session`); every action calls the
API's own route function, so it is the same audited operation the CLI and the API perform. No
script is needed and nothing is fetched from outside the service (hospital networks are closed).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from medseg.app.api.errors import Problem, problem_for
from medseg.app.api.ui import audit, models, oidc_login, overview, quality, studies
from medseg.app.api.ui.render import HERE, page, templates
from medseg.app.api.ui.session import LoginRequired, PageForbidden, login_url
from medseg.core.exceptions import MedsegError


def install(app: FastAPI) -> None:
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    for module in (overview, oidc_login, studies, models, quality, audit):
        app.include_router(module.router)
    api_problem, api_domain = app.exception_handlers[Problem], app.exception_handlers[MedsegError]

    @app.exception_handler(LoginRequired)
    def _login(request: Request, exc: LoginRequired):
        return RedirectResponse(login_url(exc.next_path), status_code=303)

    @app.exception_handler(PageForbidden)
    def _forbidden(request: Request, exc: PageForbidden):
        return page(request, "error.html", exc.principal, status_code=403, title="Not for your role",
                    detail=f"This page needs the role {' or '.join(sorted(exc.allowed))}; you hold "
                           f"{', '.join(sorted(exc.principal.roles)) or 'no role'}.")

    @app.exception_handler(Problem)
    def _problem(request: Request, exc: Problem):
        response = api_problem(request, exc)  # audited as the API's refusals are
        return _as_page(request, response, exc.title, exc.detail)

    @app.exception_handler(MedsegError)
    def _domain(request: Request, exc: MedsegError):
        response = api_domain(request, exc)
        problem = problem_for(exc)
        return _as_page(request, response, problem.title, problem.detail)


def _as_page(request: Request, response, title: str, detail: str):
    """On a dashboard path, the problem as a page (status kept); elsewhere the API's problem details."""
    principal = getattr(request.state, "principal", None)
    if not request.url.path.startswith("/ui/") or principal is None:
        return response
    return page(request, "error.html", principal, status_code=response.status_code, title=title, detail=detail)


__all__ = ["install", "templates"]
