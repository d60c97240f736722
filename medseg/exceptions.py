"""Typed errors of the segmentation core.

Every error carries a stable machine ``code`` (used by the CLI now, and by the
DICOM node and the HTTP API to pick a DIMSE status / problem type later) and a
message a user can act on. Messages name attributes and rules, never patient
values: they may be logged and shown to anyone.
"""

from __future__ import annotations


class MedsegError(Exception):
    """Base class of all user-facing errors raised by medseg."""

    code = "medseg.error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0])


class InputError(MedsegError):
    """The study or file handed to medseg cannot be segmented as it is."""

    code = "input.invalid"


class NoImageSeriesError(InputError):
    """Nothing in the input is an image series we could segment."""

    code = "input.no_series"


class SeriesSelectionError(InputError):
    """Image series were found but none passes the selection rules."""

    code = "input.no_eligible_series"


class GeometryError(InputError):
    """A series violates a geometry rule; names the attribute and the rule."""

    code = "input.geometry"

    def __init__(self, attribute: str, rule: str, detail: str = "") -> None:
        self.attribute = attribute
        self.rule = rule
        text = f"{attribute}: {rule}"
        super().__init__(f"{text} ({detail})" if detail else text, code=f"geometry.{_slug(rule)}")


class DecodeError(InputError):
    """Pixel data is missing, truncated or in a transfer syntax we cannot decode."""

    code = "input.decode"


class NiftiError(InputError):
    """A NIfTI file is unreadable or its affine is unusable."""

    code = "input.nifti"


class ModelError(MedsegError):
    """A model version is unusable: bad manifest, missing files, failed checksum."""

    code = "model.invalid"


class ChecksumError(ModelError):
    """Weights on disk do not match the sha256 pinned in the manifest."""

    code = "model.checksum"


class ModelOutputError(ModelError):
    """A model returned output that breaks its contract (non-finite, wrong shape)."""

    code = "model.bad_output"


class ModelTimeBudgetError(ModelError):
    """A model version did not finish a study's inference within the configured time budget."""

    code = "model.time_budget"


class SegGeometryError(MedsegError):
    """A SEG about to be written would not overlay its source images correctly."""

    code = "seg.geometry"


class DeviceError(MedsegError):
    """The requested compute device is not available."""

    code = "device.unavailable"


def _slug(text: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in text.lower()).split())[:40]
