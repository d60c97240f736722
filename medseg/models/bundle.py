"""Import a MONAI bundle (``configs/metadata.json``, ``configs/inference.json`` or ``.yaml``,
``models/model.pt``) as a model version that runs exactly as MONAI runs it.

The version keeps the bundle's config (``bundle/configs/``) and runs it with
:mod:`medseg.models.bundle_pipeline` (``inference.engine`` "monai-bundle"): the bundle's own
pre-processing, network (any ``monai.networks.nets`` class, built by MONAI from ``network_def``),
inferer and post-processing, less loading and saving. The manifest's ``input`` only describes it.

Refused before anything is written (exit 2, one line): a bundle that is not single-channel CT
segmentation (``metadata.json``), and one whose parts medseg runs (``network_def``,
``preprocessing``, ``inferer``, ``postprocessing`` and what they reference) contain ``$``
expressions, unless ``trust`` is given: MONAI would execute them. Expressions elsewhere (imports,
device, datalist, evaluator) are never run and need no trust. TorchScript weights (``model.ts``) are
refused: the model store keeps state dicts, checked and loaded without code execution
(``torch.load(weights_only=True)``).

Label codes: a bundle has names only; :func:`medseg.models.codes.label_codes` maps them to SNOMED
CT (neoplasm, a named structure from DICOM's dictionary, else the generic "Anatomical Structure",
listed in ``provenance.uncoded_labels`` for review before promoting). The bundle's metadata
(authors, copyright, licence, data source, intended use, published metrics, label names) is kept
in the manifest's ``provenance``. The imported version gets a gate reference at once.

What the outputs call the model (``task``): a model whose labels are all neoplasms segments
"tumor" lesions; any other segments structures, titled by its one label ("spleen") or
"multi-structure" (``--task`` names it).

Bundles written for another machine or another MONAI:

* ``overrides`` (``--override ID=VALUE``) set config values as ``python -m monai.bundle run --ID
  VALUE`` does (the pancreas DiNTS bundle hard-codes a CUDA device); kept in the manifest and
  applied on every run, and a ``$`` value needs ``trust`` like any other expression.
* An argument of ``network_def`` that the installed MONAI has removed and that never changed the
  network (:data:`medseg.models.bundle_pipeline.RETIRED_ARGS`: SwinUNETR's ``img_size``) is left
  out and recorded; anything else MONAI rejects refuses the import (``bundle.network``).
* Further files of ``models/`` (DiNTS' architecture code) are copied into the version's
  ``bundle/models/`` and checksummed in the manifest like the weights.
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
from medseg.models.bundle_pipeline import (
    CONFIG_NAMES,
    RETIRED_ARGS,
    apply_changes,
    find_config,
    parser_for,
    quiet_monai,
    retired_args,
    without_io,
)
from medseg.models.bundle_checks import check_task
from medseg.models.codes import NEOPLASM, label_codes
from medseg.models.store import sha256_file
from medseg.models.manifest import (
    ArchitectureSpec,
    InferenceSpec,
    InputSpec,
    ModelManifest,
    ProvenanceSpec,
    TaskSpec,
    WeightsSpec,
)

COLORS = [(255, 96, 0), (0, 160, 255), (60, 200, 60), (220, 40, 160), (240, 220, 0)]


RUN_IDS = ("network_def", "preprocessing", "inferer", "postprocessing")
REF = re.compile(r"@([A-Za-z0-9_#]+)")


def _find_id(config: dict, key: str, target_suffix: str) -> str | None:
    """The config id (``preprocessing#transforms#3``) of the first transform in ``config[key]`` whose
    ``_target_`` ends with ``target_suffix``."""
    transforms = (config.get(key) or {}).get("transforms", []) if isinstance(config.get(key), dict) else []
    for i, item in enumerate(transforms):
        if isinstance(item, dict) and str(item.get("_target_", "")).split(".")[-1] == target_suffix:
            return f"{key}#transforms#{i}"
    return None


def _get(config: Any, cid: str) -> Any:
    for part in cid.split("#"):
        config = config[int(part)] if isinstance(config, list) else config[part]
    return config


def _needed_expressions(config: dict, roots=RUN_IDS) -> list[str]:
    """Ids of the ``$`` expressions that running the bundle evaluates: in ``roots`` and everything
    they reference (``@id``), the I/O transforms already removed. Fields medseg never runs (imports,
    device, datalist, evaluator, handlers) are not looked at."""
    seen, found, todo = set(), [], list(roots)
    while todo:
        cid = todo.pop()
        if cid in seen:
            continue
        seen.add(cid)
        try:
            value = _get(config, cid)
        except (KeyError, IndexError, ValueError, TypeError):
            raise BundleError(f"the bundle's config has no {cid!r} (referenced by what medseg runs)") from None
        stack = [(cid, value)]
        while stack:
            where, v = stack.pop()
            if isinstance(v, dict):
                stack += [(f"{where}#{k}", x) for k, x in v.items()]
            elif isinstance(v, list):
                stack += [(f"{where}#{i}", x) for i, x in enumerate(v)]
            elif isinstance(v, str):
                if v.startswith("$") or v.startswith("%"):
                    found.append(where)
                todo += [ref.rstrip("#") for ref in REF.findall(v)]
    return sorted(found)


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
                  trust: bool = False, overrides: dict[str, Any] | None = None,
                  task_title: str | None = None) -> ModelManifest:
    """``overrides``: config id -> value, set over the bundle's config as ``monai.bundle run --<id>
    <value>`` does (e.g. a device the bundle hard-codes); kept in the version and applied on every
    run. A ``$`` value is an expression like any other: it needs ``trust``."""

    bundle = Path(bundle)
    configs = bundle / "configs"
    config_file = find_config(configs)
    try:
        metadata = json.loads((configs / "metadata.json").read_text())
        if config_file is None:
            raise FileNotFoundError(2, "missing", str(configs / CONFIG_NAMES[0]))
        config = without_io(_read(config_file))
    except FileNotFoundError as exc:
        raise BundleError(f"not a MONAI bundle: {Path(exc.filename).relative_to(bundle)} missing") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"bundle config is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    check_task(metadata)
    if not isinstance(config, dict) or any(k not in config for k in RUN_IDS):
        raise BundleError(f"{config_file.name} must define {', '.join(RUN_IDS)} (what medseg runs)")
    overrides = dict(overrides or {})
    try:
        config = apply_changes(config, overrides)
    except (KeyError, IndexError, ValueError, TypeError):
        raise BundleError(f"an --override names no place in {config_file.name}: {', '.join(overrides)}",
                          code="bundle.bad_override") from None
    dropped = retired_args(config["network_def"]) if isinstance(config["network_def"], dict) else ()
    config = apply_changes(config, dropped=dropped)
    expressions = _needed_expressions(config)
    if expressions and not trust:
        raise BundleError(f"what medseg runs of the bundle contains code expressions ({', '.join(expressions[:3])}"
                          f"{'...' if len(expressions) > 3 else ''}); MONAI would execute them. Import with --trust "
                          "only if you trust its source", code="bundle.needs_trust")
    if (bundle / "models" / "model.ts").exists() and not (bundle / "models" / "model.pt").exists():
        raise BundleError("TorchScript weights (models/model.ts) are not accepted; export a state dict as model.pt")
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
    try:
        blob = weights.read_bytes()
    except OSError:
        raise BundleError("not a MONAI bundle: models/model.pt missing") from None
    parser = parser_for(configs, bundle, overrides, dropped)
    network = _network(parser, blob)
    extra = _extra_files(bundle)
    manifest = ModelManifest(
        name=name, version=version,
        description=str(metadata.get("name") or metadata.get("description") or "imported MONAI bundle")[:200],
        intended_use=str(metadata.get("intended_use", "see the bundle's documentation"))[:500],
        architecture=ArchitectureSpec(name=type(network).__name__,
                                      args={k: v for k, v in config["network_def"].items() if k != "_target_"}),
        input=_input_spec(config, parser),
        labels=labels,
        task=_task(labels, task_title),
        inference=InferenceSpec(engine="monai-bundle", bundle_configs=BUNDLE_CONFIGS, bundle_overrides=overrides,
                                bundle_dropped_args=dropped,
                                bundle_files={f"bundle/models/{p.name}": sha256_file(p) for p in extra}),
        weights=WeightsSpec(file="model.pt", sha256=hashlib.sha256(blob).hexdigest()),
        training={"source": f"MONAI bundle {metadata.get('name', bundle.name)} {metadata.get('version', '')}",
                  "trusted_expressions": bool(expressions), "config": config_file.name,
                  "dropped_args": {cid: RETIRED_ARGS[(type(network).__name__, cid.split("#")[-1])]
                                   for cid in dropped}},
        provenance=_provenance(bundle, metadata, channels),
    )
    dst.mkdir(parents=True)
    try:
        (dst / BUNDLE_CONFIGS).mkdir(parents=True)
        shutil.copyfile(config_file, dst / BUNDLE_CONFIGS / config_file.name)
        shutil.copyfile(configs / "metadata.json", dst / BUNDLE_CONFIGS / "metadata.json")
        if (bundle / "LICENSE").is_file():
            shutil.copyfile(bundle / "LICENSE", dst / "bundle" / "LICENSE")
        shutil.copyfile(weights, dst / "model.pt")
        if extra:
            (dst / "bundle" / "models").mkdir()
            for path in extra:
                shutil.copyfile(path, dst / "bundle" / "models" / path.name)
        manifest.dump(dst)
        from medseg.models.gate import make_reference

        make_reference(dst)
    except Exception:
        shutil.rmtree(dst, ignore_errors=True)
        with contextlib.suppress(OSError):
            dst.parent.rmdir()  # the model's folder, if this version was its only one: nothing left behind
        raise
    return ModelManifest.load(dst)


BUNDLE_CONFIGS = "bundle/configs"


def _read(path: Path) -> dict:
    """A bundle config, JSON or YAML, as MONAI's ConfigParser reads it."""
    from monai.bundle import ConfigParser

    if path.suffix == ".json":
        return json.loads(path.read_text())
    try:
        return ConfigParser.load_config_file(str(path))
    except Exception as exc:  # noqa: BLE001 - the YAML parser's many error types
        raise BundleError(f"bundle config {path.name} is not valid YAML ({type(exc).__name__})") from None


def _extra_files(bundle: Path) -> list[Path]:
    """The files of the bundle's ``models/`` besides the weights that its config may load (DiNTS'
    architecture code ``search_code_*.pt``): copied with the version and checksummed. TorchScript
    and TensorRT exports are not: the version runs ``model.pt``."""
    return sorted(p for p in (bundle / "models").iterdir()
                  if p.is_file() and p.name != "model.pt" and p.suffix not in (".ts", ".engine", ".onnx", ".plan"))


def _task(labels: tuple[LabelSpec, ...], title: str | None) -> TaskSpec:
    """What the outputs call the model's findings: lesions when every label is a neoplasm, else
    structures; titled by ``title``, the one label's name, "tumor", or "multi-structure"."""
    neoplastic = all(label.type.value == NEOPLASM[1].value for label in labels)
    default = "tumor" if neoplastic else labels[0].name.lower() if len(labels) == 1 else "multi-structure"
    return TaskSpec(title=(title or default)[:24], finding="lesion" if neoplastic else "structure")


def _network(parser, blob: bytes) -> torch.nn.Module:
    """The network the bundle declares, built by MONAI, with the bundle's weights (weights only)."""
    try:
        with quiet_monai():
            network = parser.get_parsed_content("network_def")
    except Exception as exc:  # noqa: BLE001 - MONAI wraps the network's own error
        cause = exc.__cause__ or exc
        raise BundleError(f"network_def cannot be built by the installed MONAI ({type(cause).__name__}: "
                          f"{str(cause).splitlines()[0][:160]})", code="bundle.network") from None
    from medseg.models.store import load_weights

    try:
        load_weights(network, blob)
    except Exception as exc:  # noqa: BLE001 - any mismatch makes the bundle unusable
        raise BundleError(f"models/model.pt does not fit network_def ({type(exc).__name__})") from None
    return network


def _input_spec(config: dict, parser) -> InputSpec:
    """What the bundle feeds its network, as its config declares it (descriptive: MONAI runs it)."""
    def value(target: str, field: str):
        cid = _find_id(config, "preprocessing", target)
        if cid is None or field not in _get(config, cid):
            return None
        return parser.get_parsed_content(f"{cid}#{field}", instantiate=False)

    pixdim, low, high = value("Spacingd", "pixdim"), value("ScaleIntensityRanged", "a_min"), value(
        "ScaleIntensityRanged", "a_max")
    axcodes = value("Orientationd", "axcodes")
    roi = parser.get_parsed_content("inferer#roi_size", instantiate=False) if "roi_size" in config["inferer"] else None
    return InputSpec(spacing_xyz_mm=tuple(float(x) for x in pixdim) if pixdim is not None else None,
                     window_hu=(float(low), float(high)) if low is not None and high is not None else None,
                     roi_size_zyx=tuple(int(x) for x in reversed(list(roi))) if roi is not None else None,
                     orientation=str(axcodes) if axcodes else "as stored")
