"""Every domain error of medseg, in one hierarchy.

Every error carries a stable machine ``code`` and a message a user can act on. Messages
name attributes and rules, never patient values: they may be logged and shown to anyone.
Each protocol maps these to its own answer in one table: the HTTP API to problem details
(``medseg.app.api.errors``), the CLI to an exit code and one line (``medseg.app.cli.errors``).
The DICOM node has its own errors, each carrying its DIMSE status (``dicom_node.exceptions``),
because the node imports nothing of medseg.

An :class:`InputError` is the study's fault and never counts against a model (safety rule 6);
a :class:`ModelError` is the model version's, and sends the study to the previous good version.
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


class StorageError(MedsegError):
    """Results cannot be written (disk full, path unusable): neither the study's fault nor the
    model's. The worker puts the job back in the queue and retries once storage works again."""

    code = "storage.write_failed"


class HostBusyError(MedsegError):
    """The time budget ran out because the host is slow right now (an inference window took far
    longer than the same model's own best time for it), not because of the model or the study:
    the job goes back to the queue, like :class:`StorageError`."""

    code = "host.busy"


class SegWriteError(InputError):
    """The segmentation was computed but no valid DICOM SEG can be made from this series' headers
    (e.g. a SpecificCharacterSet pydicom cannot decode): the input's fault, never the model's."""

    code = "seg.unwritable"


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


class ConfigError(MedsegError):
    """The configuration (file, environment, key file) is missing or invalid."""

    code = "config.invalid"


class RegistryError(MedsegError):
    """A model registry operation was refused (unknown version, gate failed, nothing to roll back to)."""

    code = "registry.error"


class BundleError(MedsegError):
    """A MONAI bundle cannot be imported as it is."""

    code = "bundle.invalid"


class TrainingError(MedsegError):
    """A training run cannot start or continue as asked (no checkpoint to resume, one in the way)."""

    code = "train.invalid"


class ReviewError(MedsegError):
    """A radiologist's review cannot be taken (no matching result, wrong geometry, unreadable mask)."""

    code = "review.invalid"


class JobTakenOverError(MedsegError):
    """Another worker took this job over while this one ran it (the broker redelivered it: this
    worker's connection was lost): this worker's result is discarded, the other one's counts."""

    code = "job.taken_over"


class IllegalTransition(MedsegError):
    """A job state change that the state machine does not allow (``medseg.jobs.states``)."""

    code = "job.illegal_transition"


def _slug(text: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in text.lower()).split())[:40]
