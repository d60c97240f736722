"""Roles and the authenticated principal."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    RADIOLOGIST = "radiologist"
    ML_ENGINEER = "ml-engineer"
    AUDITOR = "auditor"
    ADMIN = "admin"


#: the roles that may read the service's state (studies, models, reviews, monitoring, alerts);
#: the audit trail is the auditor's alone, tokens the admin's
READERS = frozenset({Role.VIEWER, Role.RADIOLOGIST, Role.ML_ENGINEER})


def parse_roles(values) -> frozenset[Role]:
    """Role names -> roles; an unknown name is a ValueError naming the valid ones."""
    roles = set()
    for value in values:
        try:
            roles.add(Role(str(value)))
        except ValueError:
            raise ValueError(f"unknown role {value!r}: one of {', '.join(r.value for r in Role)}") from None
    return frozenset(roles)


@dataclass(frozen=True)
class Principal:
    """Who made a request: ``actor`` is what the audit trail records."""

    actor: str
    roles: frozenset[Role]

    def holds(self, allowed: frozenset[Role]) -> bool:
        return bool(self.roles & allowed)
