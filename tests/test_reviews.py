"""Review intake through its three doors against the running service (real SCP, dcmtk storescu,
HTTP API, the CLI as a subprocess on the same data dir), with the shipped model."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from medseg.core.io.nifti import write_nifti
from medseg.core.seg import read_seg_mask, write_seg
from medseg.core.volume import Volume
from medseg.training.config import TUMOR_LABEL
from tests.conftest import PHI_ID, PHI_NAME, small_phantom, write_study
from tests.node_helpers import events, settled, storescu, wait_for
from tests.test_dicom_node import jobs_in, running

pytestmark = pytest.mark.model


def expected_scores(job, datasets, truth: np.ndarray) -> tuple[float, float]:
    """Dice and FN rate computed here with numpy alone (independent of medseg.quality)."""
    ours = read_seg_mask(job.seg_path, [d.SOPInstanceUID for d in datasets]) > 0
    t = truth > 0
    overlap = np.logical_and(ours, t).sum()
    return 2 * overlap / (ours.sum() + t.sum()), 1 - overlap / t.sum()


@pytest.fixture
def served(tmp_path):
    phantom = small_phantom(seed=611, shape=(32, 128, 128), spacing=(3.0, 2.5, 2.5), n_tumors=2)
    datasets = write_study(tmp_path / "study", phantom)
    with running(tmp_path) as (service, client):
        assert storescu(service.dicom_port, sorted((tmp_path / "study").glob("*.dcm"))).returncode == 0
        job = jobs_in(service, "sent")[0]
        yield service, client, job, phantom, datasets


def test_api_and_cli_doors(served, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    service, client, job, phantom, datasets = served
    study = job.study_uid

    accepted = settled(client, client.post("/reviews", data={"study_uid": study, "accepted": "true", "reviewer": "rad-7"}))
    r = accepted["review"]
    assert r["status"] == "scored" and {s["slo"] for s in accepted["slos"]} >= {"voxel-fn-rate"}
    assert r["accepted"] and r["dice"] == 1.0 and r["door"] == "api" and r["model"] == job.model_used
    assert r["reviewer"] == "rad-7" and r["site"] == "TESTPACS"

    # NIfTI truth on the source grid, once as written and once with its axes reversed and swapped
    # (same voxels, other storage order): both score the same, exactly
    dice, fn = expected_scores(job, datasets, phantom.truth.array)
    write_nifti(phantom.truth, tmp_path / "truth.nii.gz")
    reordered = phantom.truth.array[::-1].transpose(0, 2, 1)
    affine = phantom.truth.affine.copy()
    affine[:3, 3] = phantom.truth.index_to_lps((phantom.truth.shape[0] - 1, 0, 0))
    affine[:3, 0] *= -1
    affine[:3, [1, 2]] = affine[:3, [2, 1]]
    write_nifti(Volume(np.ascontiguousarray(reordered), affine), tmp_path / "truth-reordered.nii.gz")
    for name in ("truth.nii.gz", "truth-reordered.nii.gz"):
        with open(tmp_path / name, "rb") as f:
            got = settled(client, client.post("/reviews", data={"study_uid": study}, files={"mask": (name, f)}))["review"]
        assert got["dice"] == pytest.approx(dice, abs=1e-6) and got["fn_rate"] == pytest.approx(fn, abs=1e-9)
        assert got["reference_lesions"] == ndimage.label(phantom.truth.array > 0, np.ones((3, 3, 3)))[1]

    # a mask on another grid is rejected, not resampled: the review says why, the mask is kept
    moved = phantom.truth.affine.copy()
    moved[0, 3] += 1.5  # origin 1.5 mm off
    write_nifti(Volume(phantom.truth.array, moved), tmp_path / "shifted.nii.gz")
    with open(tmp_path / "shifted.nii.gz", "rb") as f:
        bad = settled(client, client.post("/reviews", data={"study_uid": study}, files={"mask": ("m.nii.gz", f)}))["review"]
    assert bad["status"] == "rejected" and bad["note"].endswith("[review.geometry]") and bad["dice"] is None
    assert os.path.exists(bad["stored_path"])
    rejected = events(service.data_dir, "review.rejected")[-1]
    assert rejected["reason_code"] == "review.geometry" and rejected["review_id"] == bad["id"]
    garbage = settled(client, client.post("/reviews", data={"study_uid": study}, files={"mask": ("m.nii", b"not a mask")}))
    assert garbage["review"]["status"] == "rejected" and "[review.unreadable]" in garbage["review"]["note"]
    assert client.get("/reviews", params={"status": "rejected"}).json()["reviews"][0]["id"] == garbage["review"]["id"]
    unknown = client.post("/reviews", data={"study_uid": "1.2.3.4", "accepted": "true"})
    assert unknown.status_code == 404
    both = client.post("/reviews", data={"study_uid": study, "accepted": "true"},
                       files={"mask": ("m.nii.gz", (tmp_path / "truth.nii.gz").read_bytes())})
    assert both.status_code == 400

    # the CLI on the same data dir, with the truth as a DICOM SEG
    write_seg(tmp_path / "truth_seg.dcm", phantom.truth.array, datasets, [TUMOR_LABEL], model_name="radiologist",
              model_version="1", ground_truth=True, series_number=9001)
    env = {**os.environ, "MEDSEG_SERVICE__DATA_DIR": str(service.data_dir)}
    cli = [sys.executable, "-m", "medseg", "review", "submit", "--study", study, "--reviewer", "rad-9"]
    done = subprocess.run(cli + ["--mask", str(tmp_path / "truth_seg.dcm"), "--wait"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert f"Dice {dice:.3f}" in done.stdout and "SLO voxel-fn-rate" in done.stdout
    missing = subprocess.run(cli + ["--mask", str(tmp_path / "nope.dcm")], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "mask file not found" in missing.stderr
    off_grid = subprocess.run(cli + ["--mask", str(tmp_path / "shifted.nii.gz"), "--wait"], capture_output=True,
                              text=True, env=env)
    assert off_grid.returncode == 0 and "rejected: " in off_grid.stdout and "[review.geometry]" in off_grid.stdout
    shown = subprocess.run([sys.executable, "-m", "medseg", "review", "show", off_grid.stdout.split()[1]],
                           capture_output=True, text=True, env=env)
    assert shown.returncode == 0 and "[review.geometry]" in shown.stdout

    listed = subprocess.run([sys.executable, "-m", "medseg", "review", "list"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0 and "by rad-9 via cli" in listed.stdout and "by rad-7 via api" in listed.stdout
    assert "cli:cli:" not in listed.stdout and listed.stdout.strip().endswith("4 review(s)")

    rows = client.get("/reviews").json()["reviews"]
    assert [x["door"] for x in rows] == ["cli", "api", "api", "api"]
    assert [x["dice"] for x in rows if not x["accepted"]] == [pytest.approx(dice, abs=1e-6)] * 3
    scored = events(service.data_dir, "review.scored")
    assert len(scored) == 4 and all(e["study_uid"] == study for e in scored)
    received = events(service.data_dir, "review.received")
    assert len(received) == 7 and {e["door"] for e in received} == {"api", "cli"}
    stored = json.dumps(events(service.data_dir))
    assert PHI_NAME not in stored and PHI_ID not in stored
    assert caplog.records and PHI_NAME not in caplog.text and PHI_ID not in caplog.text

    # drift monitoring saw the study (label-free numbers; one study is no window yet)
    drift = client.get("/monitoring/summary").json()["models"][0]["drift"]
    assert {d["monitor"] for d in drift} >= {"input.hu_histogram", "input.scanner", "output.empty_rate"}
    assert all(not d["drifted"] and d["baseline_n"] <= 1 for d in drift)


def test_dicom_door_matches_keeps_unmatched_and_refuses_our_own_seg(served, tmp_path):
    service, client, job, phantom, datasets = served
    write_seg(tmp_path / "corrected.dcm", phantom.truth.array, datasets, [TUMOR_LABEL], model_name="viewer",
              model_version="1", ground_truth=True, series_number=9001)
    other = small_phantom(seed=3, shape=(16, 48, 48))
    other_datasets = write_study(tmp_path / "other", other)  # a study we never received
    write_seg(tmp_path / "stray.dcm", other.truth.array, other_datasets, [TUMOR_LABEL], model_name="viewer",
              model_version="1", ground_truth=True, series_number=9002)

    for name in ("corrected.dcm", "stray.dcm"):
        # -R: propose exactly the files' SOP classes (storescu's default list lacks Segmentation Storage)
        sent = storescu(service.dicom_port, [tmp_path / name], extra=("-R",))
        assert sent.returncode == 0, sent.stderr
    assert storescu(service.dicom_port, [job.seg_path], extra=("-R",)).returncode == 0  # our own SEG, forwarded back

    review = wait_for(lambda: (lambda r: r or None)(client.get("/reviews").json()["reviews"]), 30, what="DICOM review")[0]
    dice, fn = expected_scores(job, datasets, phantom.truth.array)
    assert review["door"] == "dicom" and review["submitted_by"] == "TESTPACS" and review["job_id"] == job.id
    assert review["dice"] == pytest.approx(dice, abs=1e-6) and review["fn_rate"] == pytest.approx(fn)
    assert review["correction_sop_uid"] == pydicom.dcmread(tmp_path / "corrected.dcm").SOPInstanceUID
    assert review["stored_path"].endswith(".dcm") and os.path.exists(review["stored_path"])

    # the same corrected SEG again (a resend, or intake repeated after a crash): the same review
    again = service.reviews.receive_segs([review["stored_path"]], "TESTPACS")
    assert again[0].review.id == review["id"] and len(client.get("/reviews").json()["reviews"]) == 1

    unmatched = wait_for(lambda: client.get("/reviews", params={"status": "unmatched"}).json()["reviews"] or None, 30,
                         what="unmatched SEG")
    stray_uid = pydicom.dcmread(tmp_path / "stray.dcm").SOPInstanceUID
    assert unmatched[0]["correction_sop_uid"] == stray_uid and os.path.exists(unmatched[0]["stored_path"])
    assert events(service.data_dir, "review.unmatched")[0]["sop_uid"] == stray_uid
    own = wait_for(lambda: [e for e in events(service.data_dir, "review.rejected") if "own SEG" in e.get("reason", "")]
                   or None, 30, what="own SEG refused")
    assert own[0]["sop_uid"] == job.seg_sop_uid
    assert client.get("/monitoring/summary").json()["unmatched_reviews"] == 1
    # the SEG series are not segmented
    assert len(service.jobs.jobs()) == 1


def test_a_cli_review_is_answered_at_once_and_scored_by_a_background_scorer(tmp_path):
    """Issue 18: `review submit` scored, evaluated the SLOs and ran the fallback inside the command.
    Now it stores the review and returns; with no `medseg serve` running, the detached scorer it
    starts scores it (and a claimed review is never scored twice)."""
    import time

    phantom = small_phantom(seed=612, shape=(32, 128, 128), spacing=(3.0, 2.5, 2.5), n_tumors=2)
    write_study(tmp_path / "study", phantom)
    with running(tmp_path) as (service, client):
        assert storescu(service.dicom_port, sorted((tmp_path / "study").glob("*.dcm"))).returncode == 0
        job = jobs_in(service, "sent")[0]
    # the service is stopped: nothing but the CLI's own scorer can score the review
    env = {**os.environ, "MEDSEG_SERVICE__DATA_DIR": str(tmp_path / "data")}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "medseg", "review", "submit", "--study", job.study_uid, "--accepted"],
                          capture_output=True, text=True, env=env)
    answered_s = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    review_id = done.stdout.split()[1]
    assert "received" in done.stdout and "scoring in the background" in done.stdout and "Dice" not in done.stdout

    def show():
        out = subprocess.run([sys.executable, "-m", "medseg", "review", "show", review_id], capture_output=True,
                             text=True, env=env).stdout
        return out if "Dice" in out else None
    shown = wait_for(show, 60, interval=1.0, what="the background scorer")
    assert "Dice 1.000" in shown and "SLO voxel-fn-rate" in shown
    scored = [e for e in events(tmp_path / "data", "review.scored") if str(e.get("review_id")) == review_id]
    assert len(scored) == 1
    print(f"review submit answered in {answered_s:.2f} s (interpreter start included)")
