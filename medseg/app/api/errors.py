"""The HTTP API's error boundary: RFC 9457 problem details (``application/problem+json``).

Two kinds of problems reach a client, both through the handlers installed here:

* a :class:`Problem` a route raises about the request itself (a malformed UID, a filter that
  does not parse, a mask too large, an object not found);
* a domain error (:class:`medseg.core.exceptions.MedsegError`) from the code a route calls,
  mapped by the one table below: the error's code first, then its class. The body carries
  the error's ``code`` as an extension member and at the end of ``detail``.

Nothing else is caught here: an unexpected exception is FastAPI's 500, its message never sent.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

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
    "registry.gate_failed": 409, "registry.no_previous": 409,
}
#: error class -> (HTTP status, title); first match wins, so the most specific come first
BY_CLASS: tuple[tuple[type[MedsegError], int, str], ...] = (
    (ReviewError, 400, "Review refused"),
    (RegistryError, 400, "Model registry change refused"),
    (IllegalTransition, 409, "Job state conflict"),
    (InputError, 422, "Input cannot be processed"),
    (MedsegError, 500, "Request failed"),
)


class Problem(Exception):
    """A problem with the request itself, raised by a route."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        self.status, self.title, self.detail = status, title, detail


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
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_JSON)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return _response(exc)

    @app.exception_handler(MedsegError)
    async def _domain(request: Request, exc: MedsegError):
        return _response(problem_for(exc), code=exc.code)
