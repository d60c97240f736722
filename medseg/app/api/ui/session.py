"""Who is looking at a page: the dashboard's login, its session cookie, roles and CSRF.

A person logs in with what the API takes as a bearer token: an API token (``medseg tokens
create``) or an OIDC JWT issued by the hospital's identity provider. The token is checked by the
same authenticator as the API's (:func:`medseg.app.api.deps.principal_for`) on every page, so an
expired or revoked token ends the session at once. It travels in a cookie that scripts cannot
read (``HttpOnly``), that no other site's page sends (``SameSite=Strict``), only over TLS when
the API is served over TLS (``Secure``), and that is scoped to ``/ui``. Every form that changes
something also carries a CSRF value that must equal a second cookie's (double submit), so a form
posted from elsewhere is refused even where SameSite is not honoured.

A page a role may not see answers 403 with a page saying which role it needs, and the refusal is
the API's audit event (``api.refused``); without a valid session a page redirects to the login.
"""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request

from medseg.app.api.deps import principal_for
from medseg.app.api.errors import Problem, audit_refusal
from medseg.app.auth.roles import READERS, Principal, Role

SESSION_COOKIE = "medseg_session"
CSRF_COOKIE = "medseg_csrf"
COOKIE_PATH = "/ui"


class LoginRequired(Exception):
    """No valid session: the page redirects to the login form (and back after it)."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class PageForbidden(Exception):
    """The caller holds none of the page's roles (audited as ``api.refused``)."""

    def __init__(self, principal: Principal, allowed: frozenset[Role]) -> None:
        self.principal, self.allowed = principal, allowed


def page_caller(*roles: Role):
    allowed = frozenset(roles)

    def caller(request: Request) -> Principal:
        principal = principal_for(request, request.cookies.get(SESSION_COOKIE))
        if principal is None:
            raise LoginRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        request.state.principal = principal
        if not principal.holds(allowed):
            audit_refusal(request, Problem(403, "Role required", f"this page needs the role {' or '.join(sorted(allowed))}"),
                          actor=principal.actor)
            raise PageForbidden(principal, allowed)
        return principal

    return caller


def any_role(request: Request) -> Principal:
    """The caller whatever their roles (the landing page shows each role its own links)."""
    return page_caller(*Role)(request)


def check_csrf(request: Request, value: str) -> None:
    """A state-changing form must echo the CSRF cookie (403 otherwise, audited)."""
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(expected, value or ""):
        raise audit_refusal(request, Problem(403, "Form expired", "the form's CSRF value does not match this "
                                             "session; reload the page and submit it again"))


def _cookie(response, request: Request, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        path=COOKIE_PATH)


def set_session(response, request: Request, token: str) -> None:
    _cookie(response, request, SESSION_COOKIE, token)
    _cookie(response, request, CSRF_COOKIE, secrets.token_urlsafe(24))


def clear_session(response) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path=COOKIE_PATH)


def csrf_value(request: Request) -> str:
    """The value forms carry: the cookie's, or (no cookie yet: authentication off, no login) a new
    one that :func:`ensure_csrf` sets with the page."""
    if CSRF_COOKIE in request.cookies:
        return request.cookies[CSRF_COOKIE]
    if not hasattr(request.state, "csrf"):
        request.state.csrf = secrets.token_urlsafe(24)
    return request.state.csrf


def ensure_csrf(request: Request, response) -> None:
    if CSRF_COOKIE not in request.cookies:
        _cookie(response, request, CSRF_COOKIE, csrf_value(request))


def safe_next(path: str | None) -> str:
    """Where to go after the login: a dashboard path only (never another site)."""
    if path and path.startswith("/ui/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/ui/"


def login_url(next_path: str) -> str:
    return f"/ui/login?next={quote(safe_next(next_path), safe='')}"


Viewer = Annotated[Principal, Depends(page_caller(*READERS))]
Radiologist = Annotated[Principal, Depends(page_caller(Role.RADIOLOGIST))]
MlEngineer = Annotated[Principal, Depends(page_caller(Role.ML_ENGINEER))]
Auditor = Annotated[Principal, Depends(page_caller(Role.AUDITOR))]
Anyone = Annotated[Principal, Depends(any_role)]
