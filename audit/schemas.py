"""Audit events: valid once constructed."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from audit.exceptions import PatientDataError
from audit.vocabulary import check_action

#: detail keys that would carry patient identity; patient IDs go in ``patient`` as a keyed hash only
FORBIDDEN_KEYS = {"patientname", "patient_name", "patientid", "patient_id", "patientbirthdate", "patientaddress",
                  "otherpatientids", "otherpatientnames", "patientmothersbirthname", "name", "birthdate"}
MAX_DETAILS_BYTES = 8192


class AuditEvent(BaseModel):
    """Who did what to which object, with what outcome. The time and sequence are assigned on append."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: str
    outcome: Literal["success", "failure"] = "success"
    reason_code: str = Field(default="", max_length=64)
    actor: str = Field(default="system", max_length=64)  # calling AE title, API user, "system", "cli:<user>"
    study_uid: str = Field(default="", max_length=64)
    series_uid: str = Field(default="", max_length=64)
    sop_uid: str = Field(default="", max_length=64)
    job_id: int | None = None
    model: str = Field(default="", max_length=128)  # name:version
    model_sha256: str = Field(default="", max_length=64)
    destination: str = Field(default="", max_length=64)
    patient: str = Field(default="", max_length=64)  # keyed hash of the patient ID (see pseudonymize)
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("action")
    @classmethod
    def _known(cls, v: str) -> str:
        return check_action(v)

    @field_validator("details")
    @classmethod
    def _no_patient_data(cls, v: dict) -> dict:
        def walk(obj) -> None:
            if isinstance(obj, dict):
                for key, value in obj.items():
                    if str(key).lower().replace("-", "_") in FORBIDDEN_KEYS:
                        raise PatientDataError(f"audit details may not carry {key!r}; use the keyed patient hash")
                    walk(value)
            elif isinstance(obj, (list, tuple)):
                for item in obj:
                    walk(item)
        walk(v)
        if len(json.dumps(v, default=str)) > MAX_DETAILS_BYTES:
            raise ValueError(f"details larger than {MAX_DETAILS_BYTES} bytes")
        return v


class StoredEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    ts: str  # UTC, ISO 8601 with microseconds
    event: AuditEvent
    prev_hash: str
    hash: str

    def as_dict(self) -> dict:
        return {"seq": self.seq, "ts": self.ts, **self.event.model_dump(), "prev_hash": self.prev_hash, "hash": self.hash}


def pseudonymize(patient_id: str, key: bytes) -> str:
    """Keyed hash of a patient ID (HMAC-SHA256, 32 hex digits): the same patient links across
    events, yet the ID cannot be recovered or confirmed without the key."""
    if not patient_id:
        return ""
    return hmac.new(key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
