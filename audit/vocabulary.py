"""The ONE vocabulary of audit actions: ``dotted.name -> what it records``.

Adding an action is one line here. Names are ``<domain>.<object>.<verb>`` or
``<domain>.<verb>``; queries accept a prefix (``job.*``). Each action also maps to the
DICOM audit event (PS3.15 A.5, DCM codes) used by the ATNA export.
"""

from __future__ import annotations

# action: (description, DCM EventID code, EventActionCode)
ACTIONS: dict[str, tuple[str, str, str]] = {
    "service.started": ("the service started (DICOM port, AE title)", "110100", "E"),
    "service.stopped": ("the service stopped", "110100", "E"),
    "service.recovered": ("after a restart: jobs re-queued, series whose quiet period restarts", "110100", "E"),
    "service.backed_up": ("a backup of the data directory was written (files, bytes, database)", "110106", "R"),
    "service.restored": ("the data directory was restored from a backup (its name)", "110100", "E"),
    "service.schema_upgraded": ("the service database's schema was migrated (from and to revision)", "110100", "E"),
    "audit.restored": ("the audit trail is writable again after an outage (seconds, instances refused meanwhile)", "110100", "E"),
    "config.loaded": ("configuration loaded (its sha256)", "110100", "E"),
    "dicom.association.accepted": ("association accepted (calling AE, peer address)", "110114", "E"),
    "dicom.association.rejected": ("association rejected (calling AE, peer address, reason)", "110113", "E"),
    "dicom.connection.refused": ("TCP connection from a peer address not allowed", "110113", "E"),
    "dicom.tls.handshake_failed": ("TLS handshake failed or timed out", "110113", "E"),
    "dicom.instances.received": ("instances stored, per association and series (count, SOP classes, syntaxes)", "110104", "C"),
    "dicom.instance.rejected": ("C-STORE refused (DIMSE status, reason)", "110104", "C"),
    "alert.disk_floor": ("free disk under the spool below the floor (C-STORE answers 0xA700)", "110113", "E"),
    "study.series_complete": ("quiet period passed; slice-continuity result", "110103", "R"),
    "study.series_selected": ("series will be segmented (the rule it passed)", "110103", "R"),
    "study.series_not_selected": ("series will not be segmented (rule and reason)", "110103", "R"),
    "study.continuity_wait": ("slice gap: waiting the grace period for late slices", "110103", "R"),
    "study.series_incomplete": ("instances of a series were refused for lack of resources: held, not segmented (counts)", "110103", "R"),
    "study.series_reopened": ("instances arrived after a job existed: a new revision will supersede it", "110103", "U"),
    "job.queued": ("job created and queued", "110103", "C"),
    "job.started": ("worker claimed the job (attempt, worker process)", "110103", "R"),
    "job.finished": ("segmentation done (device, degraded, timings)", "110103", "C"),
    "job.failed": ("job failed (reason code)", "110103", "E"),
    "job.superseded": ("a newer revision replaced the job", "110103", "U"),
    "job.requeued": ("a running job went back to the queue after an error outside study and model (reason)", "110103", "U"),
    "model.loaded": ("model version loaded (name:version, sha256, device)", "110100", "E"),
    "model.load_failed": ("model version failed to load or verify", "110100", "E"),
    "model.fallback_used": ("the previous good model version processed the study", "110100", "E"),
    "model.failed": ("a model version failed on a study (load, checksum, exception, output, time budget)", "110100", "E"),
    "model.imported": ("a MONAI bundle was imported as a model version (trusted or not)", "110100", "C"),
    "model.shadow_set": ("a candidate version set (or cleared) to run in shadow on live studies", "110100", "U"),
    "model.shadow_run": ("a shadow candidate segmented a study (stored, not sent; agreement)", "110103", "C"),
    "model.promoted": ("a model version became active (actor, reason, gate result)", "110100", "U"),
    "model.rolled_back": ("the active version was rolled back (actor, reason)", "110100", "U"),
    "model.gate_failed": ("a promotion or rollback was refused by the gate (reason)", "110100", "E"),
    "model.reference_recorded": ("a version's gate reference was recorded (who, mask sha256, agreement with the phantom's truth)", "110100", "U"),
    "model.breach_override": ("a version breaching an SLO on its own reviews was promoted on an explicit override (reason)", "110100", "U"),
    "alert.model_fallback": ("alert: a study needed the previous model version", "110113", "E"),
    "seg.created": ("SEG written (SOP/series UID, lesion count)", "110103", "C"),
    "seg.sent": ("SEG acknowledged by a destination (status, attempt)", "110104", "R"),
    "seg.send_failed": ("SEG send attempt failed (status, attempt, will retry)", "110104", "R"),
    "alert.job_failed": ("alert: a study ended without a delivered SEG", "110113", "E"),
    "review.worklist_added": ("study put on the re-review worklist (job, model, reason)", "110103", "U"),
    "review.received": ("a radiologist review arrived and was stored, to be scored (door, reviewer, accepted as is or corrected)", "110103", "C"),
    "review.scored": ("review matched to a job and scored (Dice, FN rate, lesions, HD95)", "110103", "C"),
    "review.unmatched": ("a corrected SEG matched none of our results (kept in the spool, reported)", "110103", "E"),
    "review.rejected": ("a review could not be scored, or was refused (geometry mismatch, unreadable mask; reason)", "110103", "E"),
    "review.worklist_closed": ("a re-review worklist item was closed by a review", "110103", "U"),
    "alert.slo_unattainable": ("a version became active whose own validation misses an SLO's objective (both numbers)", "110113", "E"),
    "alert.slo_breached": ("alert: a quality SLO is breached for a model version (evidence, policy)", "110113", "E"),
    "alert.drift_detected": ("alert: input or output drift against the baseline (statistic, threshold)", "110113", "E"),
    "alert.resolved": ("an alert stopped firing (SLO met again or drift gone)", "110113", "E"),
    "alert.fallback_failed": ("alert: an SLO's fallback policy could not roll back (reason)", "110113", "E"),
    "alert.webhook_failed": ("an alert webhook could not be delivered after its retries", "110113", "E"),
    "job.repointed": ("queued jobs moved to another model version (rollback before they started)", "110103", "U"),
    "job.reprocess_queued": ("a study re-queued on purpose on another model version (new SEG series)", "110103", "C"),
    "audit.read": ("audit data read through the CLI or API (who, filter)", "110112", "E"),
    "audit.exported": ("audit events exported (format, range)", "110106", "R"),
    "audit.anchor": ("chain head recorded outside the database (sequence, hash)", "110100", "E"),
    "api.refused": ("an HTTP call was refused: 401, 403, 400, 409, 422 (who, method, route, status, code)", "110113", "E"),
    "ui.login": ("a person logged in to the dashboard (actor, roles), or a login was refused", "110122", "E"),
    "ui.logout": ("a person logged out of the dashboard", "110123", "E"),
    "token.created": ("an API token was created (name, roles, expiry; never the secret)", "110137", "C"),
    "token.revoked": ("an API token was revoked (name)", "110137", "D"),
}


def check_action(action: str) -> str:
    from audit.exceptions import UnknownActionError

    if action not in ACTIONS:
        raise UnknownActionError(f"audit action {action!r} is not in the vocabulary (audit/vocabulary.py)")
    return action
