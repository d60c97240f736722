"""Import a MONAI bundle (configs/metadata.json, configs/inference.json, models/model.pt) as a model version.

What is taken from the bundle: the network definition (``network_def``: one of the MONAI
architectures a manifest may name), the target spacing (``Spacingd.pixdim``), the intensity
window (``ScaleIntensityRanged.a_min/a_max``), the sliding-window settings
(``SlidingWindowInferer.roi_size/overlap/sw_batch_size``) and the label names
(``metadata.json`` ``network_data_format.outputs.pred.channel_def``).

MONAI evaluates ``$`` expressions in bundle configs (arbitrary Python). Without ``trust`` any
``$`` value is refused; ``@`` references are resolved here as plain lookups. With ``trust`` the
values are resolved by ``monai.bundle.ConfigParser`` (which runs the expressions): only for a
bundle whose source you trust. TorchScript weights (``model.ts``) are refused: the model store
keeps state dicts that are checked and loaded without code execution.

Label codes: a bundle has names only; :func:`medseg.models.codes.label_codes` maps them to SNOMED
CT (neoplasm, a named structure from DICOM's dictionary, else the generic "Anatomical Structure",
listed in ``provenance.uncoded_labels`` for review before promoting). The bundle's metadata
(authors, copyright, licence, data source, intended use, published metrics, label names) is kept
in the manifest's ``provenance``. The imported version gets a gate reference at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from medseg.core.exceptions import BundleError
from medseg.core.labels import LabelSpec
from medseg.models.codes import label_codes
from medseg.models.manifest import (
    ArchitectureSpec,
    InferenceSpec,
    InputSpec,
    ModelManifest,
    ProvenanceSpec,
    WeightsSpec,
)

COLORS = [(255, 96, 0), (0, 160, 255), (60, 200, 60), (220, 40, 160), (240, 220, 0)]


def _expressions(obj, path="") -> list[str]:
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _expressions(v, f"{path}#{k}" if path else str(k))]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _expressions(v, f"{path}#{i}")]
    return [path] if isinstance(obj, str) and obj.startswith("$") else []


def _find(obj, target_suffix: str) -> dict | None:
    """The first dict whose ``_target_`` ends with ``target_suffix`` (depth first)."""
    if isinstance(obj, dict):
        if str(obj.get("_target_", "")).split(".")[-1] == target_suffix:
            return obj
        obj = list(obj.values())
    if isinstance(obj, list):
        for v in obj:
            found = _find(v, target_suffix)
            if found is not None:
                return found
    return None


class _Resolver:
    """``@key`` -> the top-level value (plain lookup); ``$expr`` -> MONAI's own ConfigExpression (trusted only)."""

    def __init__(self, config: dict, trust: bool) -> None:
        self.config, self.trust = config, trust

    def __call__(self, value: Any, where: str) -> Any:
        if isinstance(value, str) and value.startswith("@"):
            key = value[1:]
            if key not in self.config:
                raise BundleError(f"{where}: reference {value} not found in inference.json")
            return self(self.config[key], key)
        if isinstance(value, str) and value.startswith("$"):
            if not self.trust:
                raise BundleError(f"{where}: expression values need --trust", code="bundle.needs_trust")
            import monai
            import numpy
            from monai.bundle.config_item import ConfigExpression

            return ConfigExpression(config=value, id=where, globals={"monai": monai, "torch": torch, "np": numpy}).evaluate()
        if isinstance(value, list):
            return [self(v, f"{where}#{i}") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self(v, f"{where}#{k}") for k, v in value.items() if k != "_target_"}
        return value


def _label_spec(value: int, name: str) -> LabelSpec:
    codes = label_codes(name)
    return LabelSpec(value=value, name=name[:64], category=codes.category, type=codes.type,
                     color_rgb=COLORS[(value - 1) % len(COLORS)])


def _text(value: Any, limit: int = 500) -> str:
    """A metadata value as one line of text (authors may be a list)."""
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    return " ".join(str(value or "").split())[:limit]


def _provenance(bundle: Path, metadata: dict, channels: dict) -> ProvenanceSpec:
    license_file = bundle / "LICENSE"
    license_line = next((line.strip() for line in license_file.read_text(errors="replace").splitlines()
                         if line.strip()), "") if license_file.is_file() else ""
    names = {int(k): str(v) for k, v in channels.items() if int(k) > 0}
    metrics = metadata.get("eval_metrics")
    return ProvenanceSpec(
        source="MONAI bundle", name=_text(metadata.get("name"), 200), version=_text(metadata.get("version"), 64),
        task=_text(metadata.get("task"), 200), authors=_text(metadata.get("authors")),
        copyright=_text(metadata.get("copyright")), license=_text(metadata.get("license") or license_line, 200),
        data_source=_text(metadata.get("data_source")), intended_use=_text(metadata.get("intended_use")),
        references=tuple(_text(r) for r in metadata.get("references", []) or []),
        published_metrics=metrics if isinstance(metrics, dict) else {},
        label_names=names, uncoded_labels=tuple(n for n in names.values() if not label_codes(n).matched))


def import_bundle(bundle: Path, models_root: Path, *, name: str | None = None, version: str | None = None,
                  trust: bool = False) -> ModelManifest:
    bundle = Path(bundle)
    try:
        metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
        inference = json.loads((bundle / "configs" / "inference.json").read_text())
    except FileNotFoundError as exc:
        raise BundleError(f"not a MONAI bundle: {Path(exc.filename).relative_to(bundle)} missing") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"bundle config is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    _check_task(metadata)
    expressions = _expressions(inference) + _expressions(metadata)
    if expressions and not trust:
        raise BundleError(f"the bundle's configs contain code expressions ({', '.join(expressions[:3])}"
                          f"{'...' if len(expressions) > 3 else ''}); MONAI would execute them. Import with --trust "
                          "only if you trust its source", code="bundle.needs_trust")
    if (bundle / "models" / "model.ts").exists() and not (bundle / "models" / "model.pt").exists():
        raise BundleError("TorchScript weights (models/model.ts) are not accepted; export a state dict as model.pt")
    resolve = _Resolver(inference, trust)

    net = inference.get("network_def")
    if not isinstance(net, dict) or "_target_" not in net:
        raise BundleError("inference.json has no network_def with a _target_")
    arch_name = str(resolve(net["_target_"], "network_def#_target_")).split(".")[-1]
    args = resolve(net, "network_def")
    spacing = _find(inference, "Spacingd") or _find(inference, "Spacing")
    window = _find(inference, "ScaleIntensityRanged") or _find(inference, "ScaleIntensityRange")
    inferer = _find(inference, "SlidingWindowInferer")
    if spacing is None or window is None or inferer is None:
        raise BundleError("inference.json must define Spacingd, ScaleIntensityRanged and a SlidingWindowInferer")
    pixdim = [float(x) for x in resolve(spacing["pixdim"], "Spacingd#pixdim")]
    roi = [int(x) for x in resolve(inferer["roi_size"], "SlidingWindowInferer#roi_size")]
    channels = metadata.get("network_data_format", {}).get("outputs", {}).get("pred", {}).get("channel_def", {})
    labels = tuple(_label_spec(int(k), str(v)) for k, v in sorted(channels.items(), key=lambda kv: int(kv[0]))
                   if int(k) > 0)
    if not labels:
        raise BundleError("metadata.json names no output channels (network_data_format.outputs.pred.channel_def)")

    name = name or re.sub(r"[^a-z0-9-]+", "-", bundle.name.lower()).strip("-")[:48]
    version = version or str(metadata.get("version", "0.0.1"))
    dst = Path(models_root) / name / version
    if dst.exists():
        raise BundleError(f"{name}/{version} already exists in the model store", code="bundle.exists")
    weights = bundle / "models" / "model.pt"
    blob = weights.read_bytes()
    manifest = ModelManifest(
        name=name, version=version,
        description=str(metadata.get("name") or metadata.get("description") or "imported MONAI bundle")[:200],
        intended_use=str(metadata.get("intended_use", "see the bundle's documentation"))[:500],
        architecture=ArchitectureSpec(name=arch_name, args=args),
        input=InputSpec(spacing_xyz_mm=tuple(pixdim), window_hu=(float(resolve(window["a_min"], "a_min")),
                                                                   float(resolve(window["a_max"], "a_max"))),
                        roi_size_zyx=tuple(reversed(roi))),
        labels=labels,
        inference=InferenceSpec(overlap=float(resolve(inferer.get("overlap", 0.25), "overlap")),
                                sw_batch_size=int(resolve(inferer.get("sw_batch_size", 1), "sw_batch_size"))),
        weights=WeightsSpec(file="model.pt", sha256=hashlib.sha256(blob).hexdigest()),
        training={"source": f"MONAI bundle {metadata.get('name', bundle.name)} {metadata.get('version', '')}",
                  "trusted_expressions": bool(expressions)},
        provenance=_provenance(bundle, metadata, channels),
    )
    _check_weights(manifest, blob)
    dst.mkdir(parents=True)
    try:
        shutil.copyfile(weights, dst / "model.pt")
        manifest.dump(dst)
        from medseg.models.gate import make_reference

        make_reference(dst)
    except Exception:
        shutil.rmtree(dst, ignore_errors=True)
        with contextlib.suppress(OSError):
            dst.parent.rmdir()  # the model's folder, if this version was its only one: nothing left behind
        raise
    return ModelManifest.load(dst)


def _check_task(metadata: dict) -> None:
    """Refuse, before anything is read or written, a bundle that is not 3D single-channel CT
    segmentation (``metadata.json`` ``network_data_format``): medseg feeds one CT series and
    writes a SEG, so a multi-channel input or a non-image output could only be wrong."""
    fmt = metadata.get("network_data_format", {})
    inputs, outputs = fmt.get("inputs", {}), fmt.get("outputs", {})
    for key, spec in inputs.items():
        channels = int(spec.get("num_channels", 1) or 1)
        if channels != 1:
            raise BundleError(f"the bundle's input {key!r} has {channels} channels; medseg segments single-channel "
                              "CT (one series per study)", code="bundle.multi_channel")
        modality = str(spec.get("modality", "CT") or "CT")
        if modality.upper() != "CT":
            raise BundleError(f"the bundle's input {key!r} is {modality}; medseg segments CT",
                              code="bundle.not_ct")
    pred = outputs.get("pred", {})
    kind = str(pred.get("type", "image") or "image")
    if kind != "image":
        raise BundleError(f"the bundle's output 'pred' is of type {kind!r} (detection or classification), not a "
                          "segmentation image; medseg imports segmentation models only",
                          code="bundle.not_segmentation")


def _check_weights(manifest: ModelManifest, blob: bytes) -> None:
    from medseg.models.store import network_with_weights

    try:
        network_with_weights(manifest, blob)
    except Exception as exc:  # noqa: BLE001 - any mismatch makes the bundle unusable
        raise BundleError(f"models/model.pt does not fit network_def ({type(exc).__name__})") from None
