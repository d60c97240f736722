"""One bearer token -> a principal: an API token first (``msk_`` prefix), else a JWT if OIDC is configured."""

from __future__ import annotations

from medseg.app.auth.oidc import JwtVerifier
from medseg.app.auth.roles import Principal
from medseg.app.auth.tokens import PREFIX, TokenStore


class Authenticator:
    def __init__(self, settings, tokens: TokenStore) -> None:
        self.settings, self.tokens = settings, tokens
        self.jwt = JwtVerifier(settings.oidc) if settings.oidc is not None else None

    def authenticate(self, bearer: str | None) -> Principal | None:
        if not bearer:
            return None
        if bearer.startswith(PREFIX):
            return self.tokens.authenticate(bearer)
        return self.jwt.authenticate(bearer) if self.jwt is not None else None
