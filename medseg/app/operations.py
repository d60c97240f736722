"""Promotion and rollback as one service-layer operation each, shared by the CLI and the API.

Both run the gate first (:mod:`medseg.models.gate`); a refusal is audited and raised. A rollback then
switches the active version atomically, moves queued jobs that have not started, lists every
study the rolled-back version segmented since it became active (and those still running on it),
puts them on the re-review worklist and, on request, re-queues them on the target version.

Alert lifecycle: a rollback closes the rolled-back version's open SLO alerts (resolved, with
``closed_by: rollback``), so that if the version is ever active again its next breach opens a new
alert that pages and acts. Promoting a version whose own reviews breach an SLO is refused
(``registry.open_breach``) unless the caller overrides it with a reason (``model.breach_override``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medseg.core.exceptions import MedsegError, RegistryError
from medseg.jobs.states import JobState
from medseg.jobs.store import JobStore
from medseg.models import gate
from medseg.models.registry import Registry
from medseg.quality.store import MonitoringStore
from medseg.quality.worklist import Worklist


@dataclass
class RollbackReport:
    model: str
    rolled_back: str
    active: str
    gate: dict
    requeued_not_started: int
    affected: list[dict] = field(default_factory=list)
    reprocessed: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def check_gate(registry: Registry, audit, model: str, version: str, actor: str) -> gate.GateResult:
    if version not in registry.versions(model):
        raise RegistryError(f"{model}/{version} is not in the model store", code="registry.unknown_version")
    result = gate.check(registry.path(model, version))
    if not result.ok:
        audit("model.gate_failed", outcome="failure", actor=actor, model=f"{model}:{version}", reason=result.reason)
        raise RegistryError(f"{model}/{version} refused by the promotion gate: {result.reason}", code="registry.gate_failed")
    return result


def record_reference(registry: Registry, audit, model: str, version: str, *, actor: str, case=None,
                     source: str | None = None):
    """``medseg models reference`` and ``POST /models/{name}/{version}/reference``: audited either way."""
    if version not in registry.versions(model):
        raise RegistryError(f"{model}/{version} is not in the model store", code="registry.unknown_version")
    try:
        # into the site's store: a shipped version is copied there first, its installed files untouched
        ref = gate.make_reference(registry.catalog.writable(model, version), case=case, source=source)
    except RegistryError as exc:
        audit("model.gate_failed", outcome="failure", actor=actor, model=f"{model}:{version}", reason=exc.message,
              code=exc.code)
        raise
    audit("model.reference_recorded", actor=actor, model=f"{model}:{version}", mask_sha256=ref.mask_sha256,
          truth_dice=ref.truth_dice, truth_lesions_found=ref.truth_lesions_found,
          reference="case" if ref.image_file else "phantom")
    return ref


def promote(registry: Registry, audit, model: str, version: str, *, actor: str, reason: str, monitor=None,
            override_breach: str | None = None) -> tuple[str, str, dict]:
    """``monitor`` (a QualityMonitor): refuse a version whose reviews breach an SLO, unless ``override_breach``."""
    breached = [s for s in monitor.slo_status(f"{model}/{version}")[1] if s.breached] if monitor is not None else []
    if breached and not (override_breach or "").strip():
        why = "; ".join(f"{s.slo}: {s.why}" for s in breached)
        audit("model.gate_failed", outcome="failure", actor=actor, model=f"{model}:{version}",
              reason=f"open SLO breach: {why}", code="registry.open_breach")
        raise RegistryError(f"{model}/{version} breaches SLO(s) on its own reviews ({why}); promote it only with an "
                            "explicit override and its reason", code="registry.open_breach")
    result = check_gate(registry, audit, model, version, actor)
    if breached:
        audit("model.breach_override", actor=actor, model=f"{model}:{version}", reason=override_breach,
              slos=[s.as_dict() for s in breached])
    previous, new = registry.switch(model, version, action="promote", actor=actor, reason=reason)
    if monitor is not None:
        warn_unattainable(registry, audit, monitor.settings.slos, model, version)
    return previous, new, result.as_dict()


def warn_unattainable(registry: Registry, audit, slos, model: str, version: str) -> list[dict]:
    """When a version becomes active: SLOs its own validation already misses are audited and logged
    (``alert.slo_unattainable``): they would page on its genuine reviews. A warning, not a
    refusal — the objective is the site's clinical decision; the README says how to choose it."""
    from medseg.models.manifest import ModelManifest
    from medseg.quality.slo import unattainable

    try:
        metrics = ModelManifest.load(registry.path(model, version)).metrics
    except MedsegError:
        return []
    missed = unattainable(slos, metrics)
    for m in missed:
        audit("alert.slo_unattainable", outcome="failure", actor="monitor", model=f"{model}:{version}",
              reason=f"SLO {m['slo']}: objective {m['objective']} above the version's validated {m['metric']} "
                     f"{m['validated']} ({m['validated_on']}): its genuine reviews will page", **m)
    return missed


def rollback(registry: Registry, jobs: JobStore, audit, model: str, *, to: str | None, actor: str, reason: str,
             reprocess: bool = False, alerts=None) -> RollbackReport:
    """``alerts`` (an AlertManager): the rolled-back version's open SLO alerts are closed."""
    bad = registry.active(model)
    target = to or registry.rollback_target(model)
    since = max((h.at for h in registry.history(model) if h.action != "shadow" and h.to_version == bad), default=None)
    result = check_gate(registry, audit, model, target, actor)
    registry.switch(model, target, action="rollback", actor=actor, reason=reason)
    if alerts is not None:
        alerts.close_for_rollback(f"{model}/{bad}", to=f"{model}/{target}", actor=actor, reason=reason)
    moved = jobs.repoint_queued(f"{model}/{bad}", f"{model}/{target}", actor=actor, reason=f"rollback: {reason}")
    affected = jobs.segmented_by(f"{model}/{bad}", since)
    reviewed = MonitoringStore(jobs.engine).reviewed_jobs(j.id for j in affected)
    Worklist(jobs.engine, audit).add(affected, f"segmented by {model}/{bad}, rolled back: {reason}", actor, reviewed)
    report = RollbackReport(model, bad, target, result.as_dict(), moved,
                            [{"study_uid": j.study_uid, "accession": j.accession, "series_uid": j.series_uid,
                              "job_id": j.id, "state": j.state, "seg_sop_uid": j.seg_sop_uid,
                              "reviewed": j.id in reviewed} for j in affected])
    if reprocess:
        for j in affected:
            if j.state == JobState.RUNNING:
                report.reprocessed.append({"study_uid": j.study_uid, "job_id": None,
                                           "note": f"still running on {bad}; reprocess when it has finished"})
                continue
            new = jobs.reprocess(j.id, f"{model}/{target}", reason=f"rollback of {bad}: {reason}", actor=actor)
            report.reprocessed.append({"study_uid": j.study_uid, "job_id": new.id})
    return report


def slo_fallback(registry: Registry, jobs: JobStore, audit, slo_status, alerts=None):
    """The SLO policy ``fallback`` (quality monitoring): roll the breaching version back through
    :func:`rollback` (gate, switch, affected studies onto the worklist), with the evidence as reason.

    Not when the target version breaches the same SLO on its own reviews: trading one failing
    version for another would only hide the alert's cause (``slo_status(ref)`` -> (window, statuses)).
    """
    from medseg.models.registry import split_ref

    def act(model_ref: str, status, alert_id: int) -> str:
        name, version = split_ref(model_ref)
        if registry.active(name) != version:
            return f"no rollback: {model_ref} is not the active version"
        try:
            target = registry.rollback_target(name)
            if any(s.slo == status.slo and s.breached for s in slo_status(f"{name}/{target}")[1]):
                raise RegistryError(f"the rollback target {name}/{target} breaches SLO {status.slo} too",
                                    code="registry.target_breaches")
            reason = f"SLO {status.slo} breached (alert {alert_id}): {status.why}"
            report = rollback(registry, jobs, audit, name, to=target, actor="monitor", reason=reason, alerts=alerts)
        except RegistryError as exc:
            audit("alert.fallback_failed", outcome="failure", actor="monitor", model=model_ref, alert_id=alert_id,
                  reason=exc.message)
            return f"fallback failed: {exc.message}"
        if alerts is not None:  # the page lists them (UIDs and job ids; accession numbers stay in the API/CLI)
            alerts.annotate(alert_id, affected_studies=[{k: a[k] for k in ("study_uid", "series_uid", "job_id", "seg_sop_uid")}
                                                        for a in report.affected])
        return (f"rolled back {name}/{report.rolled_back} -> {name}/{report.active}; {len(report.affected)} "
                "affected studies put on the re-review worklist: "
                + (", ".join(a["study_uid"] for a in report.affected) or "none"))

    return act
