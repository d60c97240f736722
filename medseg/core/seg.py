"""DICOM Segmentation out (and back in), with highdicom.

What a viewer gets (safety rule 3: it says which model made it and that it
needs review):

* BINARY segmentation, one segment per model label, SNOMED CT coded category
  and type from the manifest, display colour, algorithm type AUTOMATIC with
  AlgorithmIdentificationSequence = model name + version (family: DCM
  "Artificial Intelligence").
* One frame per source slice (``omit_empty_frames=False``): frames lie in
  the source planes with the source's ImageOrientationPatient, rows and
  columns, and each frame references its source instance. Every source
  instance is referenced (ReferencedSeriesSequence).
* The words are the model's task (``task`` and ``finding``: "tumor" and "lesion" for medseg's
  own models, "spleen" or "multi-structure" and "structure" for an imported organ model):
  SeriesDescription ``AI tumor seg <model> - NOT REVIEWED``, ContentLabel ``AI_TUMOR_SEG``
  (``AI_<TASK>_SEG``, or ``AI_SEG`` where that exceeds the 16 characters of a CS),
  ContentDescription ``AI-generated, needs review: tumor segmentation``.
* **Nothing found** is a normal result: the SEG is still written, with the
  segment(s) defined and every frame empty, and ContentDescription /
  SeriesDescription say "no lesion detected" ("no structure"). An empty SEG keeps the
  "we looked and found nothing" fact in the PACS, next to the images.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

from medseg import __version__
from medseg.core.exceptions import SegGeometryError
from medseg.core.labels import LabelSpec

AI_SERIES_DESCRIPTION = "AI {task} seg {model} - NOT REVIEWED"
AI_SERIES_DESCRIPTION_EMPTY = "AI {task} seg {model} - no {finding} - NOT REVIEWED"
SEG_SERIES_NUMBER = 9001


@dataclass(frozen=True)
class SegInfo:
    sop_instance_uid: str
    series_instance_uid: str
    frames: int
    empty: bool


def build_seg(
    mask: np.ndarray,
    source: Sequence[Dataset],
    labels: Sequence[LabelSpec],
    *,
    model_name: str,
    model_version: str,
    series_number: int = SEG_SERIES_NUMBER,
    series_instance_uid: str | None = None,
    ground_truth: bool = False,
    task: str = "tumor",
    finding: str = "lesion",
    replaces: tuple[str, int] | None = None,
):
    """A highdicom Segmentation of ``mask`` (k, r, c) over the source slices, in order; ``task`` and
    ``finding`` are the words of its titles (the model manifest's ``task``). ``replaces``: (SEG
    series UID, revision) this SEG supersedes: named in ContentDescription ("replaces revision N")
    and in the General Series module's RelatedSeriesSequence (study and series UID; its purpose of
    reference is Type 2 and left empty: no DICOM code says "superseded"), so a viewer or a person
    can tell which of the study's SEG series is current."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    source = with_type2(source)
    first = source[0]
    expected = (len(source), int(first.Rows), int(first.Columns))
    if mask.shape != expected:
        raise ValueError(f"mask shape {mask.shape} does not match the source series {expected}")
    known = {label.value for label in labels}
    if mask.dtype != np.uint8:
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError("mask values must lie in 0..255 (label values)")
        mask = mask.astype(np.uint8)
    allowed = np.zeros(256, bool)  # a lookup table: one pass, no 8-byte copy of the mask (np.bincount makes one)
    allowed[[0, *known]] = True
    unknown = mask[~allowed[mask]]
    if unknown.size:
        raise ValueError(f"mask holds label values {sorted(int(v) for v in np.unique(unknown))} the model does not define")
    empty = not mask.any()
    model = f"{model_name} {model_version}"

    descriptions = []
    for label in labels:
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=label.value,
                segment_label=label.name if not ground_truth else f"{label.name} (reference)",
                segmented_property_category=label.category.to_code(),
                segmented_property_type=label.type.to_code(),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL if ground_truth
                else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=None if ground_truth else hd.AlgorithmIdentificationSequence(
                    name=model_name, version=model_version, family=codes.cid7162.ArtificialIntelligence
                ),
                display_color=hd.color.CIELabColor.from_rgb(*label.color_rgb),
            )
        )
    if ground_truth:
        series_description = "Phantom ground truth (synthetic)"
        content = "Reference mask of a synthetic phantom"
    else:
        template = AI_SERIES_DESCRIPTION_EMPTY if empty else AI_SERIES_DESCRIPTION
        series_description = template.format(task=task, model=model, finding=finding)[:64]
        content = "AI-generated, needs review: " + (f"No {finding} detected" if empty else f"{task} segmentation")
        if replaces is not None:
            content = f"{content[:40]}; replaces rev {replaces[1]}"
    pixel_array = mask.astype(bool) if len(labels) == 1 else mask.astype(np.uint8)
    with warnings.catch_warnings():
        # highdicom quotes the source's PatientName when it doubts its form ('The string "LUNG1-001" is
        # unlikely to represent the intended person name ...'): that would put patient data on the
        # console and in the log. The name is copied unchanged either way; the warning is dropped.
        warnings.filterwarnings("ignore", message=PERSON_NAME_WARNING, category=UserWarning)
        seg = hd.seg.Segmentation(
            source_images=list(source),
            pixel_array=pixel_array,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=series_instance_uid or generate_uid(),
            series_number=series_number,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer="medseg",
            manufacturer_model_name="medseg",
            software_versions=[__version__] if ground_truth else [__version__, model],
            device_serial_number="medseg",
            content_description=content[:64],
            content_label="REFERENCE" if ground_truth else content_label(task),
            series_description=series_description,
            omit_empty_frames=False,
        )
    if replaces is not None:
        related = Dataset()
        related.StudyInstanceUID, related.SeriesInstanceUID = first.StudyInstanceUID, replaces[0]
        related.PurposeOfReferenceCodeSequence = []
        seg.RelatedSeriesSequence = [related]
    return seg, SegInfo(str(seg.SOPInstanceUID), str(seg.SeriesInstanceUID), int(seg.NumberOfFrames), empty)


#: highdicom.valuerep.check_person_name's warning, which quotes the name
PERSON_NAME_WARNING = r"The string .* is unlikely to represent the intended person name"


def content_label(task: str) -> str:
    """``AI_<TASK>_SEG`` as a DICOM CS (A-Z, 0-9, _; 16 characters at most), else ``AI_SEG``."""
    label = "AI_" + re.sub(r"[^A-Z0-9]+", "_", task.upper()).strip("_") + "_SEG"
    return label if len(label) <= 16 else "AI_SEG"


#: Type 2 attributes of the Patient and General Study modules the SEG copies from its source: they
#: must be present but may be empty (PS3.3), and highdicom raises AttributeError when one is absent
TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "ReferringPhysicianName", "StudyID", "AccessionNumber")


def with_type2(source: Sequence[Dataset]) -> list[Dataset]:
    """The source headers, each missing Type 2 attribute present and empty (on a copy; the
    received instances are not touched): a series that omits them still gets its SEG, as dcmtk
    and Orthanc would write it, instead of failing in the SEG writer."""
    out = []
    for ds in source:
        missing = [k for k in TYPE2_COPIED if k not in ds]
        if missing:
            original, ds = ds, Dataset()
            ds.update(original)  # a new element dict holding the same elements (Dataset(ds) would share it)
            if hasattr(original, "file_meta"):
                ds.file_meta = original.file_meta
            for keyword in missing:
                setattr(ds, keyword, "")
        out.append(ds)
    return out


def write_seg(path: Path, mask: np.ndarray, source: Sequence[Dataset], *args, **kwargs) -> SegInfo:
    seg, info = build_seg(mask, source, *args, **kwargs)
    verify_seg_geometry(seg, source)
    seg.save_as(str(path), enforce_file_format=True)
    return info


def verify_seg_geometry(seg: Dataset, source: Sequence[Dataset], tolerance_mm: float = 1e-3) -> None:
    """Post-condition before a SEG leaves medseg: its frames lie in the source planes.

    Checks the shared plane orientation equals the source ImageOrientationPatient,
    rows/columns match, every source instance is referenced, and each frame's
    position equals the position of the source image it references. A mask
    handed over in the wrong axis order (e.g. RAS) yields frames perpendicular
    to the acquisition, which validators accept but viewers refuse; this refuses it.
    """
    first = source[0]
    if (int(seg.Rows), int(seg.Columns)) != (int(first.Rows), int(first.Columns)):
        raise SegGeometryError("Rows/Columns of the SEG differ from the source images")
    shared = seg.SharedFunctionalGroupsSequence[0]
    orientation = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    if not np.allclose(orientation, np.array(first.ImageOrientationPatient, float), atol=1e-4):
        raise SegGeometryError("SEG frames are not in the plane of the source images (ImageOrientationPatient)")
    positions = {str(ds.SOPInstanceUID): np.array(ds.ImagePositionPatient, float) for ds in source}
    referenced = {
        str(item.ReferencedSOPInstanceUID)
        for series in seg.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    if referenced != set(positions):
        raise SegGeometryError("SEG does not reference exactly the source instances")
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source_uid = str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        position = np.array(frame.PlanePositionSequence[0].ImagePositionPatient, float)
        if source_uid not in positions or np.abs(position - positions[source_uid]).max() > tolerance_mm:
            raise SegGeometryError("a SEG frame does not lie on the source slice it references")


def read_seg_mask(path: Path, source_sop_instance_uids: Sequence[str]) -> np.ndarray:
    """Decode a SEG back to a label array (k, r, c) over the given source instances."""
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    return seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[UID(u) for u in source_sop_instance_uids],
        combine_segments=True,
        assert_missing_frames_are_empty=True,
    ).astype(np.uint8)
