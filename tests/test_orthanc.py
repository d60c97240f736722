"""Orthanc (Debian package) as the hospital PACS: it pushes a study to medseg, the SEG comes back into it."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from medseg.core.seg import read_seg_mask
from tests.conftest import small_phantom, write_study
from tests.node_helpers import free_port, orthanc, wait_for
from tests.test_dicom_node import jobs_in, running

pytestmark = pytest.mark.model


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, JPEG2000Lossless], ids=["explicit", "j2k-lossless"])
def test_orthanc_pushes_a_study_and_receives_the_seg(tmp_path, syntax):
    study = tmp_path / "study"
    write_study(study, small_phantom(seed=11, shape=(20, 64, 64), n_tumors=2), transfer_syntax=syntax)
    files = sorted(study.glob("*.dcm"))
    node_port = free_port()
    with orthanc(tmp_path / "orthanc", {"medseg": ["MEDSEG", "127.0.0.1", node_port]}) as (url, dicom_port, aet):
        for f in files:
            httpx.post(f"{url}/instances", content=f.read_bytes(), timeout=30).raise_for_status()
        study_id = httpx.get(f"{url}/studies").json()[0]
        with running(tmp_path, allowed_calling_aets=("ORTHANC",), port=node_port, destinations=[
                {"name": "orthanc", "ae_title": aet, "host": "127.0.0.1", "port": dicom_port}]) as (service, client):
            r = httpx.post(f"{url}/modalities/medseg/store", content=study_id, timeout=120)
            assert r.status_code == 200, r.text
            job = jobs_in(service, "sent")[0]
            assert job.calling_ae == "ORTHANC"
            series = wait_for(lambda: (lambda s: s if len(s) == 2 else None)(httpx.get(f"{url}/studies/{study_id}/series").json()),
                              30, what="the SEG series in Orthanc's copy of the study")
            seg_series = next(s for s in series if s["MainDicomTags"]["Modality"] == "SEG")
            seg_file = httpx.get(f"{url}/instances/{seg_series['Instances'][0]}/file").content
            seg = pydicom.dcmread(io.BytesIO(seg_file))
            assert seg.SOPInstanceUID == job.seg_sop_uid
            assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == job.series_uid
            sources = sorted((pydicom.dcmread(f, stop_before_pixels=True) for f in files),
                             key=lambda d: float(d.ImagePositionPatient[2]))
            uids = [d.SOPInstanceUID for d in sources]
            (tmp_path / "from_orthanc.dcm").write_bytes(seg_file)
            from medseg.jobs.runner import segment_study  # the core on the files Orthanc held
            segment_study(study, tmp_path / "core", service.settings)
            np.testing.assert_array_equal(read_seg_mask(tmp_path / "from_orthanc.dcm", uids),
                                          read_seg_mask(tmp_path / "core" / "seg.dcm", uids))


def test_rollback_reprocess_sends_a_new_seg_series_to_orthanc(tmp_path):
    import shutil
    import subprocess
    import sys

    from tests.conftest import REPO

    store = tmp_path / "models" / "ct-phantom"
    store.mkdir(parents=True)
    for v in ("1.0.0", "1.1.0"):
        shutil.copytree(REPO / "models" / "ct-phantom" / v, store / v)
    study = tmp_path / "study"
    write_study(study, small_phantom(seed=12, shape=(20, 64, 64), n_tumors=2), accession_number="ACC0042")
    node_port = free_port()
    env = {"MEDSEG_SERVICE__DATA_DIR": str(tmp_path / "data"), "MEDSEG_MODELS_ROOT": str(tmp_path / "models"),
           "MEDSEG_DEFAULT_MODEL": "ct-phantom/1.1.0", "PATH": "/usr/bin:/bin"}
    with orthanc(tmp_path / "orthanc", {"medseg": ["MEDSEG", "127.0.0.1", node_port]}) as (url, dicom_port, aet):
        for f in sorted(study.glob("*.dcm")):
            httpx.post(f"{url}/instances", content=f.read_bytes(), timeout=30).raise_for_status()
        study_id = httpx.get(f"{url}/studies").json()[0]
        with running(tmp_path, allowed_calling_aets=("ORTHANC",), port=node_port, models_root=tmp_path / "models",
                     settings_extra={"default_model": "ct-phantom/1.1.0"}, destinations=[{"name": "orthanc", "ae_title": aet, "host": "127.0.0.1", "port": dicom_port}]) \
                as (service, client):
            promoted = subprocess.run([sys.executable, "-m", "medseg", "models", "promote", "1.0.0", "--reason", "trial"],
                                      capture_output=True, text=True, env=env)
            assert promoted.returncode == 0, promoted.stderr
            assert httpx.post(f"{url}/modalities/medseg/store", content=study_id, timeout=120).status_code == 200
            first = jobs_in(service, "sent")[0]
            assert first.model_used == "ct-phantom/1.0.0"

            r = client.post("/models/ct-phantom/rollback", json={"reason": "1.0.0 misses tumors", "reprocess": True})
            assert r.status_code == 200, r.text
            report = r.json()
            assert report["rolled_back"] == "1.0.0" and report["active"] == "1.1.0"
            assert [(a["job_id"], a["accession"], a["reviewed"]) for a in report["affected"]] == [(first.id, "ACC0042", False)]
            assert len(report["reprocessed"]) == 1

            def segs():
                series = httpx.get(f"{url}/studies/{study_id}/series").json()
                found = [s for s in series if s["MainDicomTags"]["Modality"] == "SEG"]
                return found if len(found) == 2 else None
            found = wait_for(segs, 120, what="the reprocessed SEG in Orthanc")
            versions = set()
            for s in found:
                blob = httpx.get(f"{url}/instances/{s['Instances'][0]}/file").content
                ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
                versions.add(ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion)
            assert versions == {"1.0.0", "1.1.0"}, "the 1.0.0 SEG the viewer showed stays; the new one is a new series"
            assert client.post("/models/ct-phantom/rollback", json={"reason": "again"}).status_code == 409
