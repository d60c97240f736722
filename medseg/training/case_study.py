"""Write a real CT case (NIfTI CT + expert mask, e.g. a sarcoma case of ``tests/data/sts-ct``) as a
DICOM series, so it can be pushed to the node like a study from a PACS.

Layout of ``out/``::

    dicom/IM0001.dcm ...   the CT series (patient ANONYMIZED^<case>, one file per NIfTI slice k)
    truth.nii.gz           the truth mask (expert outline), same grid
    case.json              case, source, UIDs

The series carries its attribution, which the licence requires (the soft-tissue sarcoma cases are
CC BY 3.0): the collection and licence in DeidentificationMethod (0012,0063), the citation in
ImageComments (0020,4000).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian

from medseg.core.io.nifti import read_nifti, write_nifti
from medseg.core.volume import Volume
from medseg.training.ct_writer import ct_datasets, write_series

STS_SOURCE = "TCIA Soft-tissue-Sarcoma, CC BY 3.0"
STS_ATTRIBUTION = ("Vallieres M, Freeman CR, Skamene SR, El Naqa I. The Cancer Imaging Archive (2015), "
                   "DOI 10.7937/K9/TCIA.2015.7GO2GSKS; crop and GTV by A. Zwanenburg (IBSI, MIRP); "
                   "converted from NIfTI to DICOM by medseg. Not a clinical image of this site.")


def write_case_study(case_dir: Path, out: Path) -> dict:
    """A sarcoma case folder (CT_image.nii.gz in HU, CT_mask.nii.gz); returns what case.json records."""
    case_dir = Path(case_dir)
    return write_ct_study(read_nifti(case_dir / "CT_image.nii.gz"), read_nifti(case_dir / "CT_mask.nii.gz"), out,
                          name=case_dir.name, source=STS_SOURCE, attribution=STS_ATTRIBUTION, body_part="EXTREMITY")


def write_ct_study(image: Volume, truth: Volume, out: Path, *, name: str, source: str, attribution: str,
                   body_part: str) -> dict:
    """Any real CT (HU) and its truth mask on the same grid, as above."""
    out = Path(out)
    datasets = ct_datasets(
        image, patient_name=f"ANONYMIZED^{name}", patient_id=name, series_description=f"{name} (converted)",
        accession_number=name[:16], body_part=body_part, manufacturer="converted by medseg",
        deidentification_method=source, image_comments=attribution,
    )
    write_series(datasets, out / "dicom", ExplicitVRLittleEndian)
    write_nifti(truth.with_array((truth.array > 0).astype(np.uint8)), out / "truth.nii.gz", dtype=np.uint8)
    info = {
        "case": name,
        "source": source,
        "attribution": attribution,
        "slices": image.shape[0],
        "study_instance_uid": str(datasets[0].StudyInstanceUID),
        "series_instance_uid": str(datasets[0].SeriesInstanceUID),
        "sop_instance_uids": [str(d.SOPInstanceUID) for d in datasets],
    }
    (out / "case.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
