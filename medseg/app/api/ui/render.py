"""Pages as server-rendered HTML (Jinja2, autoescaped): the layout, the navigation a role sees,
and small formatting filters. Nothing is loaded from outside the service: one stylesheet under
``/ui/static``, plots as inline SVG, thumbnails as PNG from the service itself."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from fastapi import Request
from fastapi.templating import Jinja2Templates

from medseg import __version__
from medseg.app.api.ui.session import csrf_value, ensure_csrf, safe_next
from medseg.app.auth.roles import READERS, Principal, Role

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

#: (path, label, roles that see it): each role sees only the pages it may open
NAV = (
    ("/ui/", "Overview", READERS),
    ("/ui/studies", "Studies", READERS),
    ("/ui/models", "Models", READERS),
    ("/ui/quality", "Quality", READERS),
    ("/ui/worklist", "Worklist", frozenset({Role.RADIOLOGIST})),
    ("/ui/audit", "Audit", frozenset({Role.AUDITOR})),
)


def _when(value) -> str:
    """An ISO time (UTC) as 'YYYY-MM-DD HH:MM:SS' for tables."""
    if not value:
        return ""
    text = value.isoformat() if isinstance(value, dt.datetime) else str(value)
    return text.replace("T", " ").removesuffix("Z").split(".")[0].split("+")[0]


def _num(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


templates.env.filters.update(when=_when, num=_num, compact=lambda v: json.dumps(v, sort_keys=True, default=str))


def page(request: Request, template: str, caller: Principal, status_code: int = 200, **context):
    """Render ``template`` in the layout, with the caller's navigation and the CSRF value for forms."""
    nav = [(path, label) for path, label, roles in NAV if caller.holds(roles)]
    response = templates.TemplateResponse(request, template, {
        "caller": caller, "nav": nav, "version": __version__, "roles": sorted(r.value for r in caller.roles),
        "can": lambda role: Role(role) in caller.roles,
        "csrf": csrf_value(request), **context}, status_code=status_code)
    ensure_csrf(request, response)
    return response


def login_page(request: Request, service, next_path: str, error: str | None = None, status_code: int = 200):
    """The login form: an API token or a JWT, and the identity provider's login where configured."""
    oidc = service.settings.auth.oidc
    return templates.TemplateResponse(request, "login.html", {
        "next": safe_next(next_path), "version": __version__, "nav": [], "caller": None, "error": error,
        "oidc": bool(oidc and oidc.login_client_id)}, status_code=status_code)
