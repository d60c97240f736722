"""OIDC / JWT bearer tokens, verified with PyJWT against the configured issuer, audience and keys.

The keys are a JWKS: a local file (``jwks_file``; e.g. exported from the identity provider, and
what the tests use) or the provider's ``jwks_url`` (fetched by ``jwt.PyJWKClient``, cached). The
signature, ``exp``, ``nbf``, ``iss`` and ``aud`` are checked; ``exp`` and ``sub`` are required.
Roles come from ``roles_claim`` (a list, or a space-separated string), each value either a role
name or a key of ``role_map`` (e.g. ``{"radiology-staff" = "radiologist"}``); values that are
neither are ignored, so a token of the right issuer with no known role gets 403, not 401.
"""

from __future__ import annotations

import json

import jwt

from medseg.app.auth.roles import Principal, Role


class JwtVerifier:
    def __init__(self, settings) -> None:
        self.settings = settings
        if settings.jwks_file:
            self._keys = jwt.PyJWKSet.from_dict(json.loads(settings.jwks_file.read_text()))
            self._client = None
        else:
            self._keys = None
            self._client = jwt.PyJWKClient(settings.jwks_url, cache_keys=True)

    def _key(self, token: str):
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        kid = jwt.get_unverified_header(token).get("kid")
        if kid is None:
            keys = list(self._keys.keys)
            if len(keys) != 1:
                raise jwt.InvalidTokenError("token has no kid and the JWKS holds more than one key")
            return keys[0].key
        return self._keys[kid].key

    def claims(self, token: str) -> dict | None:
        """The verified claims of a JWT, or None (bad signature, expired, wrong issuer/audience...).
        The audience is the API's, or the dashboard's login client (its ID tokens)."""
        s = self.settings
        audiences = [s.audience, *([s.login_client_id] if s.login_client_id else [])]
        try:
            return jwt.decode(token, self._key(token), algorithms=list(s.algorithms), audience=audiences,
                              issuer=s.issuer, leeway=s.leeway_s, options={"require": ["exp", "sub", "iss", "aud"]})
        except (jwt.PyJWTError, KeyError):
            return None

    def principal(self, claims: dict) -> Principal:
        s = self.settings
        values = claims.get(s.roles_claim, [])
        if isinstance(values, str):
            values = values.split()
        roles = set()
        for value in values if isinstance(values, list) else []:
            name = s.role_map.get(str(value), str(value))
            if name in Role._value2member_map_:
                roles.add(Role(name))
        return Principal(f"oidc:{claims['iss']}#{claims['sub']}", frozenset(roles))

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid JWT, or None."""
        claims = self.claims(token)
        return self.principal(claims) if claims is not None else None
