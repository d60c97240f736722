"""API tokens: random bearer secrets, stored as their SHA-256 only.

A token is ``msk_`` + 43 URL-safe characters (256 random bits), shown once when created. A
SHA-256 of such a secret cannot be reversed or brute-forced, so no slow password hash is needed
(the practice of GitHub's and GitLab's personal access tokens); lookup is by that digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets

from sqlalchemy import DateTime, Integer, String, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from medseg.app.auth.roles import Principal, Role, parse_roles
from medseg.core.exceptions import MedsegError
from medseg.db import Base, plain, session, utcnow

PREFIX = "msk_"
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    roles: Mapped[str] = mapped_column(String(128))  # comma-separated Role values
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    def as_dict(self) -> dict:
        return {"name": self.name, "roles": self.roles.split(","), "created_at": plain(self.created_at),
                "created_by": self.created_by, "expires_at": plain(self.expires_at),
                "revoked_at": plain(self.revoked_at), "last_used_at": plain(self.last_used_at)}


class TokenError(MedsegError):
    """A token that cannot be created or revoked as asked."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class TokenStore:
    def __init__(self, engine: Engine, auditor) -> None:
        self.engine, self.auditor = engine, auditor

    def create(self, name: str, roles, *, actor: str, expires_days: float | None = None) -> tuple[str, ApiToken]:
        """(the secret, shown once; the stored row). Audited as ``token.created``."""
        if not NAME.match(name):
            raise TokenError(f"token name {name!r}: 1-64 letters, digits and _.@-", code="token.bad_name")
        try:
            granted = parse_roles(roles)
        except ValueError as exc:
            raise TokenError(str(exc), code="token.bad_role") from None
        if not granted:
            raise TokenError("a token needs at least one role (--role)", code="token.bad_role")
        secret = PREFIX + secrets.token_urlsafe(32)
        expires = utcnow() + dt.timedelta(days=expires_days) if expires_days else None
        row = ApiToken(name=name, digest=digest(secret), roles=",".join(sorted(r.value for r in granted)),
                       created_by=actor, expires_at=expires)
        with session(self.engine) as s:
            if s.scalar(select(ApiToken).where(ApiToken.name == name)) is not None:
                raise TokenError(f"a token named {name!r} exists (revoke it first)", code="token.exists")
            s.add(row)
            s.commit()
        self.auditor("token.created", actor=actor, token=name, roles=row.roles.split(","),
                     expires_at=plain(expires))
        return secret, row

    def revoke(self, name: str, *, actor: str) -> ApiToken:
        with session(self.engine) as s:
            row = s.scalar(select(ApiToken).where(ApiToken.name == name))
            if row is None or row.revoked_at is not None:
                raise TokenError(f"no active token named {name!r}", code="token.not_found")
            row.revoked_at = utcnow()
            s.commit()
        self.auditor("token.revoked", actor=actor, token=name)
        return row

    def list(self) -> list[ApiToken]:
        with session(self.engine) as s:
            return list(s.scalars(select(ApiToken).order_by(ApiToken.id)))

    def authenticate(self, secret: str) -> Principal | None:
        """The principal of an active token, or None (unknown, revoked or expired)."""
        if not secret.startswith(PREFIX):
            return None
        with session(self.engine) as s:
            row = s.scalar(select(ApiToken).where(ApiToken.digest == digest(secret)))
            now = utcnow()
            if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
                return None
            if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
                row.last_used_at = now  # at most one write a minute per token
                s.commit()
            return Principal(f"token:{row.name}", frozenset(Role(r) for r in row.roles.split(",")))
