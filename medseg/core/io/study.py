"""One study in: a DICOM folder or a NIfTI file; one validated :class:`~medseg.core.volume.Volume` out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medseg.core.io.decode import check_plausible_hu, read_hu_slices
from medseg.core.io.geometry import sort_and_check
from medseg.core.io.nifti import is_nifti, read_nifti
from medseg.core.io.rules import GeometryTolerances, SelectionRules
from medseg.core.io.scan import ScanResult, scan_folder
from medseg.core.io.selection import SeriesDecision, select_series
from medseg.core.volume import Volume


@dataclass
class LoadedStudy:
    volume: Volume
    kind: str  # "dicom" or "nifti"
    decisions: list[SeriesDecision] = field(default_factory=list)
    scan_summary: dict = field(default_factory=dict)
    transfer_syntaxes: list[str] = field(default_factory=list)


def load_study(
    path: Path,
    rules: SelectionRules | None = None,
    tolerances: GeometryTolerances | None = None,
    *,
    scan: ScanResult | None = None,
) -> LoadedStudy:
    """Load the series to segment: validate geometry first, then decode to HU. ``scan``: the
    folder's headers where the caller has already read them (they are not read twice)."""
    path = Path(path)
    if is_nifti(path):
        volume = read_nifti(path)
        check_plausible_hu(volume.array)
        return LoadedStudy(volume, "nifti")
    scan = scan or scan_folder(path)
    series, decisions = select_series(scan.series, rules or SelectionRules())
    order, affine = sort_and_check(series.headers, tolerances or GeometryTolerances())
    headers = [series.headers[i] for i in order]
    paths = [series.paths[i] for i in order]
    hu = read_hu_slices(paths, headers, int(headers[0].Rows), int(headers[0].Columns))
    check_plausible_hu(hu)
    syntaxes = sorted({str(h.file_meta.TransferSyntaxUID.name) for h in headers if "TransferSyntaxUID" in h.file_meta})
    return LoadedStudy(Volume(hu, affine, tuple(headers)), "dicom", decisions, scan.summary(), syntaxes)
