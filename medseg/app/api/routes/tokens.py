"""API tokens (the admin's): list, create (the secret is in the response, once), revoke."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from medseg.app.api.deps import Admin, ServiceDep
from medseg.app.api.schemas import CONFLICT, NOT_FOUND, NewToken, Token, Tokens
from medseg.app.auth.roles import Role

router = APIRouter(prefix="/tokens", tags=["tokens"])


class TokenRequest(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    roles: list[Role] = Field(min_length=1)
    expires_days: float | None = Field(default=None, gt=0, le=3650)


@router.get("")
def list_tokens(service: ServiceDep, caller: Admin) -> Tokens:
    return {"tokens": [t.as_dict() for t in service.tokens.list()]}


@router.post("", status_code=201, responses=CONFLICT)
def create_token(body: TokenRequest, service: ServiceDep, caller: Admin) -> NewToken:
    secret, row = service.tokens.create(body.name, body.roles, actor=caller.actor, expires_days=body.expires_days)
    return {"token": secret, **row.as_dict()}


@router.delete("/{name}", responses=NOT_FOUND)
def revoke_token(name: str, service: ServiceDep, caller: Admin) -> Token:
    return service.tokens.revoke(name, actor=caller.actor).as_dict()
