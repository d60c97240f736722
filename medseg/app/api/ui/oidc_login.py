"""Log in through the hospital's identity provider: OpenID Connect's authorization code flow with
PKCE (RFC 7636), the flow a server-rendered application uses.

``/ui/login/oidc`` sends the browser to the provider with a fresh ``state``, ``nonce`` and PKCE
challenge, kept in a short-lived cookie (``HttpOnly``, ``SameSite=Lax`` so that it comes back
with the provider's redirect, scoped to the callback). The callback checks ``state``, redeems
the code at the token endpoint with the PKCE verifier (and the client secret where the client is
confidential), verifies the ID token with the API's own verifier (issuer, keys, expiry; audience
= the login client) and its ``nonce``, and makes it the session. The roles come from the token's
roles claim, as for the API; a person whose token carries no role gets no session. Every outcome
is the audit event ``ui.login`` (``method: oidc``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from urllib.parse import quote, urlencode

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from medseg.app.api.deps import ServiceDep, anonymous
from medseg.app.api.errors import Problem
from medseg.app.api.ui.render import login_page
from medseg.app.api.ui.session import safe_next, set_session

router = APIRouter(prefix="/ui/login", include_in_schema=False)
FLOW_COOKIE, FLOW_PATH, FLOW_SECONDS = "medseg_oidc", "/ui/login/oidc", 600


def _settings(service):
    oidc = service.settings.auth.oidc
    if oidc is None or not oidc.login_client_id:
        raise Problem(404, "Not found", "no identity provider login is configured ([auth.oidc] login_client_id)")
    return oidc


def _redirect_uri(request: Request, oidc) -> str:
    return oidc.login_redirect_uri or str(request.url_for("oidc_callback"))


@router.get("/oidc")
def start(request: Request, service: ServiceDep, next: str = "/ui/"):
    oidc = _settings(service)
    flow = {"state": secrets.token_urlsafe(24), "nonce": secrets.token_urlsafe(24),
            "verifier": secrets.token_urlsafe(48), "next": safe_next(next)}
    challenge = base64.urlsafe_b64encode(hashlib.sha256(flow["verifier"].encode()).digest()).rstrip(b"=").decode()
    query = urlencode({"response_type": "code", "client_id": oidc.login_client_id, "scope": oidc.login_scopes,
                       "redirect_uri": _redirect_uri(request, oidc), "state": flow["state"], "nonce": flow["nonce"],
                       "code_challenge": challenge, "code_challenge_method": "S256"})
    response = RedirectResponse(f"{oidc.authorization_endpoint}?{query}", status_code=303)
    response.set_cookie(FLOW_COOKIE, json.dumps(flow), max_age=FLOW_SECONDS, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", path=FLOW_PATH)
    return response


@router.get("/oidc/callback", name="oidc_callback")
def callback(request: Request, service: ServiceDep, code: str = "", state: str = "", error: str = ""):
    oidc = _settings(service)
    try:
        flow = json.loads(request.cookies.get(FLOW_COOKIE, "{}"))
    except ValueError:
        flow = {}

    def refuse(reason: str):
        service.events("ui.login", outcome="failure", actor=anonymous(request), method="oidc", reason=reason)
        response = login_page(request, service, flow.get("next", "/ui/"),
                              f"The identity provider login did not succeed: {reason}.", 401)
        response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH)
        return response

    if error:
        return refuse(f"the provider answered {error[:64]!r}")
    if not flow.get("state") or not secrets.compare_digest(flow["state"], state):
        return refuse("the login expired or did not start here (state mismatch); start it again")
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": _redirect_uri(request, oidc),
            "client_id": oidc.login_client_id, "code_verifier": flow["verifier"]}
    auth = None
    if oidc.login_client_secret_file:  # a confidential client: HTTP Basic (client_secret_basic, RFC 6749 2.3.1)
        auth = httpx.BasicAuth(quote(oidc.login_client_id, safe=""),
                               quote(oidc.login_client_secret_file.read_text().strip(), safe=""))
    try:
        answer = httpx.post(oidc.token_endpoint, data=form, auth=auth, timeout=15)
        id_token = answer.json().get("id_token", "") if answer.status_code == 200 else ""
    except (httpx.HTTPError, ValueError):
        id_token = ""
    if not id_token:
        return refuse("the token endpoint gave no ID token")
    verifier = service.authenticator.jwt
    claims = verifier.claims(id_token) if verifier is not None else None
    if claims is None or not secrets.compare_digest(str(claims.get("nonce", "")), flow["nonce"]):
        return refuse("the ID token did not verify (issuer, keys, audience, expiry or nonce)")
    principal = verifier.principal(claims)
    if not principal.roles:
        return refuse(f"your account holds no medseg role (claim {oidc.roles_claim!r})")
    service.events("ui.login", actor=principal.actor, method="oidc", roles=sorted(r.value for r in principal.roles))
    response = RedirectResponse(flow["next"], status_code=303)
    response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH)
    set_session(response, request, id_token)
    return response
