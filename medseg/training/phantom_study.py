"""Write a phantom as a study on disk: the DICOM series plus its ground truth.

Layout of ``out/``::

    dicom/IM0001.dcm ...   the CT series (obviously fake patient: PHANTOM^<seed>)
    image.nii.gz           the same image as NIfTI (HU)
    truth.nii.gz           ground-truth tumor mask, NIfTI, same grid
    truth_seg.dcm          ground-truth mask as DICOM-SEG referencing the series
    phantom.json           seed, geometry, UIDs and the tumors placed
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian

from medseg.core.io.nifti import write_nifti
from medseg.core.phantom import generate_phantom
from medseg.core.seg import write_seg
from medseg.training.config import TUMOR_LABEL
from medseg.training.ct_writer import ct_datasets, write_series


def write_phantom_study(
    out: Path,
    seed: int,
    *,
    shape=None,
    spacing=None,
    orientation: str = "supine",
    n_tumors: int | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    **encode_kwargs,
) -> dict:
    out = Path(out)
    phantom = generate_phantom(seed, shape=shape, spacing=spacing, orientation=orientation, n_tumors=n_tumors)
    image_type = ("ORIGINAL", "PRIMARY", "AXIAL" if orientation in ("supine", "prone", "feet_first") else "REFORMATTED")
    datasets = ct_datasets(
        phantom.image,
        patient_name=f"PHANTOM^SEED{seed}",
        patient_id=f"PHANTOM-{seed}",
        series_description=f"Phantom CT seed {seed}",
        accession_number=f"PH{seed}",
        image_type=image_type,
        patient_position={"prone": "HFP", "feet_first": "FFS"}.get(orientation, "HFS"),
    )
    if encode_kwargs == {} and transfer_syntax == "1.2.840.10008.1.2.4.91":
        encode_kwargs = {"j2k_cr": [10]}
    write_series(datasets, out / "dicom", transfer_syntax, **encode_kwargs)
    write_nifti(phantom.image, out / "image.nii.gz", dtype=np.int16)
    write_nifti(phantom.truth, out / "truth.nii.gz", dtype=np.uint8)
    seg = write_seg(
        out / "truth_seg.dcm", phantom.truth.array, datasets, [TUMOR_LABEL],
        model_name="phantom", model_version=str(seed), ground_truth=True, series_number=9000,
    )
    info = {
        "seed": seed,
        "orientation": orientation,
        "slices": phantom.image.shape[0],
        "rows": phantom.image.shape[1],
        "columns": phantom.image.shape[2],
        "spacing_krc_mm": [round(s, 4) for s in phantom.image.spacing],
        "study_instance_uid": str(datasets[0].StudyInstanceUID),
        "series_instance_uid": str(datasets[0].SeriesInstanceUID),
        "truth_seg_sop_instance_uid": seg.sop_instance_uid,
        "tumors": [
            {"center_lps_mm": [round(v, 2) for v in t.center_lps], "diameter_mm": t.diameter_mm,
             "contrast_hu": t.contrast_hu, "host": t.host}
            for t in phantom.tumors
        ],
    }
    (out / "phantom.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
