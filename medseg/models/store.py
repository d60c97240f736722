"""Load a model version from ``models/<name>/<version>/``: verify, then deserialize.

The weights file is read once into memory, its sha256 compared with the
manifest, and only then deserialized from those same bytes with
``torch.load(weights_only=True)`` (no pickle code execution, no window
between check and use).
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from medseg.core.exceptions import ChecksumError, DeviceError, HostBusyError, ModelError, ModelTimeBudgetError
from medseg.models.manifest import ModelManifest


def build_network(manifest: ModelManifest, model_dir: Path | None = None) -> torch.nn.Module:
    """medseg's engine: a whitelisted MONAI network from the manifest's arguments. An imported bundle:
    the network its config declares, built by MONAI's ConfigParser (``network_def``)."""
    if manifest.inference.engine == "monai-bundle":
        from medseg.models.bundle_pipeline import build_bundle_network

        i = manifest.inference
        return build_bundle_network(Path(model_dir) / i.bundle_configs, i.bundle_overrides, i.bundle_dropped_args)
    from monai.networks import nets

    cls = getattr(nets, manifest.architecture.name)
    try:
        return cls(**manifest.architecture.args)
    except TypeError as exc:
        raise ModelError(f"{manifest.ref}: architecture.args do not fit {manifest.architecture.name} ({exc})") from None


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class LoadedModel:
    manifest: ModelManifest
    network: torch.nn.Module
    path: Path
    device: str
    #: an imported MONAI bundle's own transforms and inferer (None: medseg's pipeline)
    bundle: object | None = None
    _budget: threading.local = field(default_factory=threading.local, repr=False)
    #: the fastest forward pass seen per input shape on this host: the model's own reference timing
    _best_s: dict = field(default_factory=dict, repr=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """One forward pass. Past the time budget the pass is timed: far slower than this model's
        own best for that window (``busy_factor``) means the host is busy (:class:`HostBusyError`,
        the job is retried); otherwise the model has overrun (:class:`ModelTimeBudgetError`)."""
        deadline = getattr(self._budget, "deadline", None)
        overrun = deadline is not None and time.monotonic() > deadline
        started = time.perf_counter()
        out = self.network(x)
        took = time.perf_counter() - started
        key = tuple(x.shape)
        best = self._best_s.get(key)
        if overrun:
            factor = self._budget.busy_factor
            if best is not None and took > factor * best:
                raise HostBusyError(f"{self.manifest.ref}: past the time budget an inference window took {took:.2f} s, "
                                    f"{took / best:.1f} times this model's best ({best:.3f} s): the host is busy")
            raise ModelTimeBudgetError(f"{self.manifest.ref}: inference exceeded its time budget")
        if best is None or took < best:
            self._best_s[key] = took
        return out

    @contextmanager
    def time_budget(self, seconds: float | None, busy_factor: float = 3.0):
        """Inference windows started after ``seconds`` raise (this thread only): HostBusyError when
        the host is ``busy_factor`` times slower than this model's best, else ModelTimeBudgetError."""
        self._budget.deadline = None if seconds is None else time.monotonic() + seconds
        self._budget.busy_factor = busy_factor
        try:
            yield self
        finally:
            self._budget.deadline = None

    def segment(self, volume, *, device: str = "cpu", amp: bool = False, progress=None):
        """This version on one study: medseg's pipeline with the manifest's spec, or the bundle's own."""
        if self.bundle is not None:
            return self.bundle.segment(volume, self, device=device, progress=progress)
        from medseg.core.pipeline.segment import segment

        return segment(volume, self, self.manifest.pipeline_spec(), device=device, amp=amp, progress=progress)

    def to(self, device: str) -> "LoadedModel":
        self.network.to(device)
        self.device = device
        return self


def load_model(model_dir: Path, device: str = "cpu") -> LoadedModel:
    model_dir = Path(model_dir)
    manifest = ModelManifest.load(model_dir)
    weights = model_dir / manifest.weights.file
    try:
        blob = weights.read_bytes()
    except OSError:
        raise ModelError(f"{manifest.ref}: weights file {manifest.weights.file} missing", code="model.weights_missing") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != manifest.weights.sha256:
        raise ChecksumError(
            f"{manifest.ref}: weights sha256 {digest[:12]}... does not match the manifest's {manifest.weights.sha256[:12]}..."
        )
    for name, expected in manifest.inference.bundle_files.items():
        try:
            digest = sha256_file(model_dir / name)
        except OSError:
            raise ModelError(f"{manifest.ref}: bundle file {name} missing", code="model.weights_missing") from None
        if digest != expected:
            raise ChecksumError(f"{manifest.ref}: {name} sha256 {digest[:12]}... does not match the manifest's "
                                f"{expected[:12]}...")
    try:
        network = network_with_weights(manifest, blob, model_dir)
    except Exception as exc:  # noqa: BLE001 - any deserialization failure makes the version unusable
        raise ModelError(f"{manifest.ref}: weights cannot be loaded ({type(exc).__name__})") from None
    bundle = None
    if manifest.inference.engine == "monai-bundle":
        from medseg.models.bundle_pipeline import BundlePipeline

        try:
            i = manifest.inference
            bundle = BundlePipeline(model_dir / i.bundle_configs, tuple(label.value for label in manifest.labels),
                                    i.bundle_overrides, i.bundle_dropped_args)
        except Exception as exc:  # noqa: BLE001 - a config MONAI cannot instantiate makes the version unusable
            raise ModelError(f"{manifest.ref}: the bundle's transforms cannot be built ({type(exc).__name__})") from None
    return LoadedModel(manifest, network, model_dir, "cpu", bundle).to(device)


def network_with_weights(manifest: ModelManifest, blob: bytes, model_dir: Path | None = None) -> torch.nn.Module:
    """The manifest's network with the state dict in ``blob`` (``weights_only``: no pickle code runs),
    in eval mode. Raises what torch raises when the weights do not fit; callers name the failure."""
    return load_weights(build_network(manifest, model_dir), blob)


def load_weights(network: torch.nn.Module, blob: bytes) -> torch.nn.Module:
    """``network`` with the state dict in ``blob`` (``weights_only``: no pickle code runs), in eval mode."""
    network.load_state_dict(torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True))
    return network.eval()


def resolve_device(requested: str = "auto") -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; explicit devices are checked."""
    requested = requested.lower()
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {requested} requested but CUDA is not available on this host")
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {requested} requested but only {torch.cuda.device_count()} GPU(s) present")
        return requested
    raise DeviceError(f"unknown device {requested!r}: use auto, cpu, cuda or cuda:N")
