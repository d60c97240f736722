"""The model registry: which version of each model is active, and the history of how it got there.

State lives in the database (not in files people edit): one row per model name with its
active version, and an append-only history of promotions and rollbacks with actor, time
and reason, each audited in the same transaction. The model *files* stay in the model
store (``models/<name>/<version>/``), checked by the promotion gate (:mod:`medseg.models.gate`).

The fallback chain of a model (used per study when a version fails) is the active version,
then the versions that were active before it, most recent first.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from audit.recorder import Recorder
from medseg.core.exceptions import MedsegError, RegistryError
from medseg.db import session, utcnow
from medseg.models.catalog import ModelCatalog
from medseg.models.manifest import ModelManifest
from medseg.models.orm import ModelState, RegistryHistory


def split_ref(ref: str) -> tuple[str, str]:
    name, _, version = ref.replace(":", "/").partition("/")
    if not name or not version:
        raise RegistryError(f"model reference {ref!r} must be <name>/<version>", code="registry.bad_ref")
    return name, version


class Registry:
    def __init__(self, engine: Engine, catalog: ModelCatalog, audit: Recorder) -> None:
        self.engine, self.catalog, self.audit = engine, catalog, audit

    def path(self, name: str, version: str) -> Path:
        """The folder of a version (the site's store, else the shipped models)."""
        return self.catalog.path(name, version)

    def _event(self, s: Session, action: str, **fields) -> None:
        self.audit(action, connection=s.connection(), **fields)

    def _identity(self, name: str, version: str) -> dict:
        """The version's weights sha256 and manifest hash, for its registry events."""
        try:
            manifest = ModelManifest.load(self.path(name, version))
        except MedsegError:  # the switch itself refuses a version that is not in the store
            return {}
        return {"sha256": manifest.weights.sha256, "manifest_sha256": manifest.manifest_sha256()}

    def versions(self, name: str) -> list[str]:
        """Versions in the model catalog (the site's store and the shipped models), oldest first."""
        return self.catalog.versions(name)

    def active(self, name: str) -> str | None:
        with session(self.engine) as s:
            row = s.get(ModelState, name)
            return row.active if row else None

    def active_ref(self, default_ref: str) -> str:
        """The active ``name/version`` for the default model's name (the default itself until bootstrapped)."""
        name, version = split_ref(default_ref)
        return f"{name}/{self.active(name) or version}"

    def bootstrap(self, default_ref: str, actor: str = "system") -> str:
        """First start: the configured default becomes the active version (recorded, not gated:
        it is what the service ran before the registry existed)."""
        name, version = split_ref(default_ref)
        with session(self.engine) as s, s.begin():
            row = s.get(ModelState, name)
            if row is not None:
                return row.active
            s.add(ModelState(name=name, active=version))
            s.add(RegistryHistory(name=name, action="bootstrap", to_version=version, actor=actor,
                                  reason="configured default model"))
            self._event(s, "model.promoted", actor=actor, model=f"{name}:{version}", reason="bootstrap from configuration",
                        **self._identity(name, version))
            return version

    def history(self, name: str) -> list[RegistryHistory]:
        with session(self.engine) as s:
            return list(s.scalars(select(RegistryHistory).where(RegistryHistory.name == name)
                                  .order_by(RegistryHistory.id)))

    def rolled_back(self, name: str) -> set[str]:
        """Versions taken out of service by a rollback: not good, so never a fallback or rollback target."""
        return {h.from_version for h in self.history(name) if h.action == "rollback" and h.from_version}

    def fallback_chain(self, name: str, first: str | None = None) -> list[str]:
        """``first`` (default: the active version), then earlier active versions that were not rolled
        back, most recent first."""
        chain = [first or self.active(name)]
        bad = self.rolled_back(name)
        for h in reversed(self.history(name)):
            if h.action == "shadow":
                continue
            for v in (h.from_version, h.to_version):
                if v and v not in chain and v not in bad:
                    chain.append(v)
        return [v for v in chain if v]

    def switch(self, name: str, version: str, *, action: str, actor: str, reason: str) -> tuple[str, str]:
        """Make ``version`` active (the caller has run the gate). Returns (previous, new)."""
        if not reason.strip():
            raise RegistryError("a reason is required", code="registry.reason_required")
        if version not in self.versions(name):
            raise RegistryError(f"{name}/{version} is not in the model store", code="registry.unknown_version")
        with session(self.engine) as s, s.begin():
            row = s.get(ModelState, name, with_for_update=True)
            previous = row.active if row else ""
            if previous == version:
                raise RegistryError(f"{name}/{version} is already active", code="registry.already_active")
            if row is None:
                s.add(ModelState(name=name, active=version))
            else:
                row.active, row.updated_at = version, utcnow()
            s.add(RegistryHistory(name=name, action=action, from_version=previous, to_version=version, actor=actor,
                                  reason=reason))
            self._event(s, f"model.{'promoted' if action == 'promote' else 'rolled_back'}", actor=actor,
                        model=f"{name}:{version}", previous=f"{name}:{previous}" if previous else None, reason=reason,
                        **self._identity(name, version))
            return previous, version

    def shadow(self, name: str) -> str | None:
        with session(self.engine) as s:
            row = s.get(ModelState, name)
            return (row.shadow or None) if row else None

    def set_shadow(self, name: str, version: str | None, *, actor: str, reason: str) -> None:
        if version is not None and version not in self.versions(name):
            raise RegistryError(f"{name}/{version} is not in the model store", code="registry.unknown_version")
        with session(self.engine) as s, s.begin():
            row = s.get(ModelState, name)
            if row is None:
                raise RegistryError(f"{name}: no active version yet", code="registry.not_bootstrapped")
            row.shadow = version or ""
            s.add(RegistryHistory(name=name, action="shadow", from_version=row.active, to_version=version or "",
                                  actor=actor, reason=reason))
            self._event(s, "model.shadow_set", actor=actor, model=f"{name}:{version}" if version else None,
                        reason=reason, enabled=version is not None)

    def rollback_target(self, name: str) -> str:
        """The most recent earlier active version that was not itself rolled back."""
        candidates = self.fallback_chain(name)[1:]
        if not candidates:
            raise RegistryError(f"{name}: no previous good version to roll back to", code="registry.no_previous")
        return candidates[0]
