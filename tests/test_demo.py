"""The README's main job (`medseg serve --push-case`): a held-out real sarcoma case, converted to
DICOM with its attribution, is pushed to the node, segmented, sent to a real PACS (dcmtk
storescp), and the SEG's Dice against the expert outline is printed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pydicom
import pytest

from medseg.app.demo import case_study, seg_dice
from medseg.core.io.nifti import read_nifti
from medseg.core.scoring import dice
from medseg.core.seg import write_seg
from medseg.training.config import STS_HOLDOUT, TUMOR_LABEL
from tests.conftest import TEST_DATA
from tests.node_helpers import free_port, storescp

CASE = TEST_DATA / "sts-ct" / "STS_006"


def test_a_converted_case_carries_its_attribution_and_its_truth_scores_one(tmp_path):
    assert CASE.name in STS_HOLDOUT  # the demo shows a case the model never trained on
    study = case_study(CASE, tmp_path / "case")
    files = sorted(study.dicom.glob("*.dcm"))
    first = pydicom.dcmread(files[0])
    assert first.PatientIdentityRemoved == "YES" and "CC BY 3.0" in first.DeidentificationMethod
    assert "10.7937/K9/TCIA.2015.7GO2GSKS" in first.ImageComments
    assert len(files) == len(study.sop_uids) == read_nifti(CASE / "CT_image.nii.gz").shape[0]
    truth = read_nifti(study.truth).array
    datasets = [pydicom.dcmread(f) for f in files]
    write_seg(tmp_path / "truth-seg.dcm", truth, datasets, [TUMOR_LABEL], model_name="expert",
                       model_version="1", ground_truth=True, series_number=9000)
    assert seg_dice(tmp_path / "truth-seg.dcm", study) == pytest.approx(1.0)
    shifted = np.roll(truth, 3, axis=2)  # a mask 3 columns off scores less: the mapping is not blind
    write_seg(tmp_path / "shifted.dcm", shifted, datasets, [TUMOR_LABEL], model_name="expert", model_version="1",
              ground_truth=True, series_number=9001)
    expected = dice(shifted > 0, truth > 0)
    assert expected < 0.99 and seg_dice(tmp_path / "shifted.dcm", study) == pytest.approx(expected)


def _frames_by_instance(seg: pydicom.Dataset, uids: list[str], shape) -> np.ndarray:
    """The SEG decoded with pydicom alone (not medseg's reader): each frame to its source slice."""
    mask = np.zeros(shape, bool)
    frames = seg.pixel_array.reshape(-1, *shape[1:])
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        mask[uids.index(str(source))] |= frame > 0
    return mask


@pytest.mark.model
def test_demo_pushes_the_case_and_prints_the_seg_dice(tmp_path):
    http_port, dicom_port = free_port(), free_port()
    with storescp(tmp_path / "pacs", ae_title="DEMO-PACS") as pacs_port:
        config = tmp_path / "medseg.toml"
        config.write_text(f"""
[service]
data_dir = "{tmp_path / 'data'}"
http_port = {http_port}
[node]
port = {dicom_port}
allowed_calling_aets = ["DEMO-PACS"]
quiet_period_s = 1
disk_floor_mb = 0
send_to = ["@sender"]
[[node.destinations]]
name = "demo-pacs"
ae_title = "DEMO-PACS"
host = "127.0.0.1"
port = {pacs_port}
""")
        proc = subprocess.Popen([sys.executable, "-m", "medseg", "serve", "--config", str(config), "--push-case", str(CASE)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not any(line.startswith("demo: Dice") for line in lines):
                assert proc.poll() is None, "".join(lines)
                time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(30)
    out = "".join(lines)
    assert "demo: pushed" in out and "instances of real case STS_006 (TCIA Soft-tissue-Sarcoma, CC BY 3.0)" in out, out
    sent = re.search(r"demo: SEG (\S+) by ct-phantom/2\.1\.0 .* sent to demo-pacs \(sent, status 0x0000\)", out)
    assert sent, out
    printed = float(re.search(r"demo: Dice (\d\.\d{3}) against the expert outline of real case STS_006", out).group(1))
    received = [pydicom.dcmread(p) for p in (tmp_path / "pacs").iterdir()]
    seg = next(d for d in received if d.Modality == "SEG" and d.SOPInstanceUID == sent.group(1))
    uids = json.loads((tmp_path / "data" / "demo" / "STS_006" / "case.json").read_text())["sop_instance_uids"]
    truth = read_nifti(CASE / "CT_mask.nii.gz").array > 0
    assert printed == pytest.approx(dice(_frames_by_instance(seg, uids, truth.shape), truth), abs=5e-4)
