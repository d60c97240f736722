"""What ``medseg models import-bundle`` can refuse before torch and MONAI load (about 8 s of imports
on 2 cores): a malformed ``--override ID=VALUE``, and a bundle whose ``metadata.json`` says it is not
single-channel CT segmentation. :func:`medseg.models.bundle.import_bundle` applies both again."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from medseg.core.exceptions import BundleError


def parse_override(text: str) -> tuple[str, Any]:
    """``id=value`` as ``monai.bundle run --id value`` reads it: a Python literal (``False``, ``1.5``,
    ``[96, 96, 96]``) where it is one, else the text (``cpu``, ``$torch.device('cpu')``)."""
    import ast

    cid, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_]+(#[A-Za-z0-9_]+)*", cid.strip()):
        raise BundleError(f"--override must be ID=VALUE with a config id such as dints_space#device, not {text!r}",
                          code="bundle.bad_override")
    try:
        parsed = value if value[:1] in "$@%" else ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    return cid.strip(), parsed


def check_task(metadata: dict) -> None:
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


def check_metadata(bundle: Path) -> None:
    """:func:`check_task` on the bundle's ``configs/metadata.json``, when it is there and valid JSON (a
    missing or damaged one is the import's to report, with the rest of the bundle's layout)."""
    try:
        metadata = json.loads((Path(bundle) / "configs" / "metadata.json").read_text())
    except (OSError, ValueError):
        return
    if isinstance(metadata, dict):
        check_task(metadata)
