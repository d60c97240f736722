"""The HTTP API's error boundary: RFC 9457 problem details (``application/problem+json``).

Two kinds of problems reach a client, both through the handlers installed here:

* a :class:`Problem` a route raises about the request itself (a malformed UID, a filter that
  does not parse, a mask too large, an object not found);
* a domain error (:class:`medseg.core.exceptions.MedsegError`) from the code a route calls,
  mapped by the one table below: the error's code first, then its class. The body carries
  the error's ``code`` as an extension member and at the end of ``detail``.

FastAPI's own errors (a request that fails validation, an unknown path or method) are answered
as problem details too. A refused call (400, 401, 403, 409, 422) is an audit event,
``api.refused`` (outcome failure: who, method, route, status, the error code); 401 and 403 are
audited where they are decided (``deps.require``).

Nothing else is caught here: an unexpected exception is FastAPI's 500, its message never sent.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from medseg.app.auth.tokens import TokenError
from medseg.core.exceptions import (
    IllegalTransition,
    InputError,
    MedsegError,
    RegistryError,
    ReviewError,
)

PROBLEM_JSON = "application/problem+json"

#: error code -> HTTP status, where the code says more than the class
STATUS_BY_CODE: dict[str, int] = {
    "review.no_result": 404, "review.no_source": 409, "review.ambiguous": 409,
    "review.geometry": 422, "review.unreadable": 422,
    "registry.gate_failed": 409, "registry.no_previous": 409, "registry.unknown_version": 404,
    "registry.not_bootstrapped": 404, "registry.reference_disagrees": 409, "registry.open_breach": 409,
    "registry.already_active": 409, "registry.stale_page": 409,
    "token.exists": 409, "token.not_found": 404,
}
#: error class -> (HTTP status, title); first match wins, so the most specific come first
BY_CLASS: tuple[tuple[type[MedsegError], int, str], ...] = (
    (ReviewError, 400, "Review refused"),
    (TokenError, 400, "Token change refused"),
    (RegistryError, 400, "Model registry change refused"),
    (IllegalTransition, 409, "Job state conflict"),
    (InputError, 422, "Input cannot be processed"),
    (MedsegError, 500, "Request failed"),
)


#: statuses that mean "refused" and are audited
REFUSED = frozenset({400, 401, 403, 409, 422})


class Problem(Exception):
    """A problem with the request itself, raised by a route."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> None:
        self.status, self.title, self.detail, self.headers = status, title, detail, headers
        self.audited = False


def audit_refusal(request: Request, problem: Problem, *, actor: str | None = None, code: str | None = None) -> Problem:
    """Record the refused call (once) and hand the problem back to be raised or answered."""
    if problem.status in REFUSED and not problem.audited:
        problem.audited = True
        principal = getattr(request.state, "principal", None)
        route = request.scope.get("route")
        request.app.state.service.events(
            "api.refused", outcome="failure",
            actor=actor or (principal.actor if principal else f"api:{request.client.host if request.client else 'unknown'}"),
            code=code, method=request.method, route=getattr(route, "path", "(no route)"), status=problem.status,
            title=problem.title)
    return problem


def problem_for(exc: MedsegError) -> Problem:
    status, title = next((s, t) for cls, s, t in BY_CLASS if isinstance(exc, cls))
    return Problem(STATUS_BY_CODE.get(exc.code, status), title, f"{exc.message} [{exc.code}]")


def first_error(exc: Exception) -> str:
    """The first validation error as ``field: rule`` (or the first line of a ValueError)."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc).splitlines()[0]


def _response(problem: Problem, **extra) -> JSONResponse:
    body = {"type": "about:blank", "title": problem.title, "status": problem.status, "detail": problem.detail, **extra}
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    def _problem(request: Request, exc: Problem):
        return _response(audit_refusal(request, exc))

    @app.exception_handler(MedsegError)
    def _domain(request: Request, exc: MedsegError):
        return _response(audit_refusal(request, problem_for(exc), code=exc.code), code=exc.code)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return _response(audit_refusal(request, Problem(422, "Invalid request", f"{where}: {first['msg']}")))

    @app.exception_handler(HTTPException)
    def _http(request: Request, exc: HTTPException):
        problem = Problem(exc.status_code, {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error"),
                          str(exc.detail), headers=getattr(exc, "headers", None))
        return _response(audit_refusal(request, problem))
