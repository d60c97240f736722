"""`medseg segment` (a study in, seg.dcm / mask.nii.gz and result.json out) and `medseg phantom`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medseg.app.cli.common import output_folder, progress, stdout

TRANSFER_SYNTAXES = {
    "explicit": "1.2.840.10008.1.2.1",
    "implicit": "1.2.840.10008.1.2",
    "deflated": "1.2.840.10008.1.2.1.99",
    "rle": "1.2.840.10008.1.2.5",
    "jpegls": "1.2.840.10008.1.2.4.80",
    "j2k": "1.2.840.10008.1.2.4.90",
    "j2k-lossy": "1.2.840.10008.1.2.4.91",
}


def segment(
    input: Path = typer.Argument(..., help="DICOM folder (any layout) or a NIfTI file"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder"),
    model: Optional[str] = typer.Option(None, help="model folder or <name>/<version> under models/"),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N"),
    nifti: bool = typer.Option(False, "--nifti", help="also write mask.nii.gz for DICOM input"),
    series: Optional[str] = typer.Option(None, help="SeriesInstanceUID to segment instead of the automatic choice"),
    any_orientation: bool = typer.Option(False, help="accept coronal/sagittal/oblique series"),
) -> None:
    """Segment a CT study with the model: writes seg.dcm (DICOM input) or mask.nii.gz (NIfTI input) and result.json."""
    from medseg.config import get_settings
    from medseg.jobs.runner import segment_study

    output_folder(out)
    settings = get_settings()
    rules: dict = {}
    if series:
        rules["series_uid"] = series
    if any_orientation:
        rules["orientations"] = ("AXIAL", "CORONAL", "SAGITTAL", "OBLIQUE")
    settings = settings.model_copy(update={"selection": settings.selection.model_copy(update=rules)})
    with progress("segmenting") as report:
        result = segment_study(input, out, settings, model=model, device=device, nifti=nifti, progress=report)
    _summary(result, out)


def _choice(value: str, allowed, option: str) -> None:
    """A bad option value is a usage error (click's message, exit 2); the choices are checked here
    rather than in the signature so that loading the CLI imports none of the phantom code."""
    if value not in allowed:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, allowed))}", param_hint=option)


def _summary(result, out_dir: Path) -> None:
    t = result.timings_s
    stdout.print(f"model {result.model.name} {result.model.version} on {result.device}"
              + (f" [yellow](degraded: {result.degraded_reason})[/]" if result.degraded else ""))
    finding = result.task.finding
    if result.lesion_count == 0:
        stdout.print(f"no {finding} detected")
    elif finding != "lesion":  # anatomy: one line per structure the model segments, found or not
        found = [s for s in result.segments if s.components]
        stdout.print(f"{result.task.title}: {len(found)} of {len(result.segments)} structure(s) found, "
                     f"total {result.total_volume_ml:.2f} mL")
        for segment in found[:10]:
            stdout.print(f"  {segment.label:>3}. {segment.name}: {segment.volume_ml:8.2f} mL"
                         + (f" in {segment.components} parts" if segment.components > 1 else ""))
        if len(found) > 10:
            stdout.print(f"  ... {len(found) - 10} more in result.json")
    else:
        stdout.print(f"{result.lesion_count} lesion(s), total {result.total_volume_ml:.2f} mL")
        for i, lesion in enumerate(result.lesions[:10], 1):
            x, y, z = lesion.centroid_lps_mm
            stdout.print(f"  {i:>2}. {lesion.label_name}: {lesion.volume_ml:8.2f} mL at LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm")
        if result.lesion_count > 10:
            stdout.print(f"  ... {result.lesion_count - 10} more in result.json")
    files = ", ".join(str(out_dir / name) for name in result.outputs.values())
    stdout.print(f"wrote {files} in {t.get('total', 0):.1f} s")


def phantom(
    out: Path = typer.Option(..., "--out", "-o", help="output folder"),
    seed: int = typer.Option(0, min=0, help="random seed: same seed, same study"),
    slices: Optional[int] = typer.Option(None, min=2, help="number of slices"),
    size: Optional[int] = typer.Option(None, min=16, help="rows = columns"),
    slice_thickness: Optional[float] = typer.Option(None, min=0.1, help="slice spacing in mm"),
    pixel_spacing: Optional[float] = typer.Option(None, min=0.05, help="in-plane pixel spacing in mm"),
    orientation: str = typer.Option("supine", help="supine | prone | feet_first | coronal | sagittal"),
    tumors: Optional[int] = typer.Option(None, min=0, help="number of tumors (default: 0-4 from the seed)"),
    transfer_syntax: str = typer.Option("explicit", help=" | ".join(TRANSFER_SYNTAXES)),
) -> None:
    """Write a CT-like phantom study: DICOM series, image + truth as NIfTI, truth as DICOM-SEG."""
    from medseg.core.phantom import ORIENTATIONS
    from medseg.training.phantom_study import write_phantom_study

    _choice(transfer_syntax, TRANSFER_SYNTAXES, "--transfer-syntax")
    _choice(orientation, ORIENTATIONS, "--orientation")
    output_folder(out)
    shape = None
    if slices or size:
        shape = (slices or 80, size or 256, size or 256)
    spacing = None
    if slice_thickness or pixel_spacing:
        spacing = (slice_thickness or 2.5, pixel_spacing or 1.5, pixel_spacing or 1.5)
    with progress("writing phantom"):
        info = write_phantom_study(out, seed, shape=shape, spacing=spacing, orientation=orientation, n_tumors=tumors,
                                   transfer_syntax=TRANSFER_SYNTAXES[transfer_syntax])
    stdout.print(f"phantom seed {seed}: {info['slices']} slices of {info['rows']}x{info['columns']}, "
              f"{len(info['tumors'])} tumor(s) -> {out}/dicom, truth.nii.gz, truth_seg.dcm, image.nii.gz")
