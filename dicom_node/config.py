"""Settings of the DICOM node (the ``[node]`` section): our AE, association policy, TLS, spool floor,
study assembly timing and the destinations SEGs go to.

Plain pydantic models with no dependency on the rest of medseg: the service's settings root
(``medseg.config.Settings``) composes them, and the node can be configured on its own.
Unsafe or meaningless values are refused when the settings are built, never coerced.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_AE_TITLE = re.compile(r"^[\x21-\x5b\x5d-\x7e]([\x20-\x5b\x5d-\x7e]{0,14}[\x21-\x5b\x5d-\x7e])?$")


def _ae_title(v: str) -> str:
    """PS3.5 AE title: 1-16 characters of the default repertoire, no backslash, no leading/trailing space."""
    if not _AE_TITLE.match(v):
        raise ValueError("must be 1-16 printable ASCII characters without backslash or leading/trailing spaces")
    return v


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TLSSettings(_Section):
    """DICOM TLS (PS3.15 B.1). Enabled when a certificate is configured."""

    cert: Path | None = None
    key: Path | None = None
    #: CA bundle that client certificates must chain to
    ca: Path | None = None
    require_client_cert: bool = True
    #: a peer that opens TCP but does not finish the handshake in this time is dropped (and audited)
    handshake_timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> "TLSSettings":
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key must be given together")
        if self.cert is not None and self.require_client_cert and self.ca is None:
            raise ValueError("require_client_cert needs a ca bundle to verify client certificates against")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert is not None


class DestinationSettings(_Section):
    """A DICOM peer we send SEGs to (C-STORE SCU)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    ae_title: str
    host: str
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    #: CA bundle to verify the destination's certificate, and our client certificate/key
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @field_validator("ae_title")
    @classmethod
    def _peer_ae(cls, v: str) -> str:
        return _ae_title(v)


class NodeSettings(_Section):
    """The DICOM node: our AE, association policy, spool and study assembly."""

    ae_title: str = "MEDSEG"
    host: str = "127.0.0.1"
    port: int = Field(default=11112, ge=0, le=65535)
    max_associations: int = Field(default=10, ge=1)
    max_pdu: int = Field(default=65536, ge=0)  # 0 = unlimited
    acse_timeout_s: float = Field(default=30.0, gt=0)
    dimse_timeout_s: float = Field(default=60.0, gt=0)
    network_timeout_s: float = Field(default=60.0, gt=0)
    #: calling AE titles allowed to associate; empty = any (the README says why that is not the default in production)
    allowed_calling_aets: tuple[str, ...] = ()
    #: peer IP addresses allowed to connect; empty = any
    allowed_addresses: tuple[str, ...] = ()
    #: refuse an association addressed to another AE title (A-ASSOCIATE-RJ, called AE not recognized):
    #: a study a modality meant for another node must not land in the AI pipeline unnoticed
    require_called_aet: bool = True
    tls: TLSSettings = TLSSettings()
    #: C-STORE answers 0xA700 (out of resources) while free space under the spool is below this
    disk_floor_mb: float = Field(default=1024.0, ge=0)
    #: a series is complete when no instance arrived for this long
    quiet_period_s: float = Field(default=10.0, gt=0)
    #: a series with a slice gap waits this much longer for the missing slices before it fails visibly
    continuity_grace_s: float = Field(default=10.0, ge=0)
    #: a series with instances refused for lack of resources (0xA700) is held this long for the
    #: sender's retry, then fails visibly (study.incomplete), never segmented partial
    incomplete_hold_s: float = Field(default=3600.0, gt=0)
    #: a series whose association ended in an abort (the sender crashed, the link dropped, A-ABORT)
    #: is held the same way until an association that delivers it is released normally. false: for
    #: senders that end every association with A-ABORT (then the quiet period alone decides)
    hold_aborted: bool = True
    destinations: tuple[DestinationSettings, ...] = ()
    #: where SEGs go: destination names, "@sender" = the destination whose AE title sent the study
    send_to: tuple[str, ...] = ("@sender",)
    send_retries: int = Field(default=5, ge=0)
    send_backoff_s: float = Field(default=2.0, gt=0)
    send_backoff_max_s: float = Field(default=300.0, gt=0)

    @field_validator("ae_title")
    @classmethod
    def _our_ae(cls, v: str) -> str:
        return _ae_title(v)

    @field_validator("allowed_calling_aets")
    @classmethod
    def _aets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_ae_title(a) for a in v)

    @model_validator(mode="after")
    def _routes(self) -> "NodeSettings":
        names = [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ValueError("destination names must be unique")
        unknown = [n for n in self.send_to if n != "@sender" and n not in names]
        if unknown:
            raise ValueError(f"send_to names unknown destinations: {unknown}")
        return self


