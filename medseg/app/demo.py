"""The README's main job: once `medseg serve` is up, push a study to it (a held-out real sarcoma
case converted to DICOM, or a phantom), say where the SEG went and score it against the truth."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pydicom
from pynetdicom import AE

from medseg.jobs.states import JobState

DEMO_AE = "DEMO-PACS"


def push_study(folder: Path, host: str, port: int, called_ae: str, calling_ae: str = DEMO_AE) -> int:
    """C-STORE every file of a folder in one association; returns how many were acknowledged."""
    paths = sorted(Path(folder).glob("*.dcm"))
    first = pydicom.dcmread(paths[0], stop_before_pixels=True)
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(first.SOPClassUID, first.file_meta.TransferSyntaxUID)
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        raise RuntimeError(f"could not associate with {called_ae}@{host}:{port}")
    ok = 0
    try:
        for path in paths:
            status = assoc.send_c_store(pydicom.dcmread(path))
            ok += int(bool(status) and status.Status == 0)
    finally:
        assoc.release()
    return ok


@dataclass(frozen=True)
class DemoStudy:
    what: str  # "held-out case STS_006" / "phantom seed 123"
    truth_name: str  # what the truth is, for the report
    dicom: Path
    study_uid: str
    truth: Path  # NIfTI mask on the grid of the series (slice k = instance k + 1)
    sop_uids: tuple[str, ...]


def phantom_study(seed: int, folder: Path) -> DemoStudy:
    from medseg.training.phantom_study import write_phantom_study

    info = write_phantom_study(folder, seed)
    uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in sorted((folder / "dicom").glob("*.dcm"))]
    return DemoStudy(f"phantom seed {seed}", "the phantom's truth", folder / "dicom", info["study_instance_uid"],
                     folder / "truth.nii.gz", tuple(uids))


def case_study(case_dir: Path, folder: Path) -> DemoStudy:
    from medseg.training.case_study import write_case_study

    info = write_case_study(case_dir, folder)
    return DemoStudy(f"real case {info['case']} ({info['source']})", "the expert outline", folder / "dicom",
                     info["study_instance_uid"], folder / "truth.nii.gz", tuple(info["sop_instance_uids"]))


def push_when_ready(service, make_study: Callable[[Path], DemoStudy], say: Callable[[str], None],
                    timeout_s: float = 900.0) -> threading.Thread:
    """Once the node listens: ``make_study`` writes the study under the data dir, it is pushed as
    the demo PACS, and the finished job is reported with the SEG's Dice against the truth."""

    def run() -> None:
        while service.dicom_port is None:
            time.sleep(0.2)
        study = make_study(service.data_dir / "demo")
        node = service.settings.node
        sent = push_study(study.dicom, "127.0.0.1" if node.host in ("0.0.0.0", "") else node.host,
                          service.dicom_port, node.ae_title)
        say(f"demo: pushed {sent} instances of {study.what} as {DEMO_AE}; "
            f"segmenting after the {node.quiet_period_s:g} s quiet period")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = [j for j in service.jobs.jobs(study.study_uid) if j.state in (JobState.SENT, JobState.FAILED)]
            if done:
                _report(service, done[-1], study, say)
                return
            time.sleep(0.5)
        say("demo: no result within the time limit; see GET /studies")

    thread = threading.Thread(target=run, name="medseg-demo", daemon=True)
    thread.start()
    return thread


def seg_dice(seg_path: Path, study: DemoStudy) -> float:
    """Dice of the SEG's mask against the study's truth, over the study's instances."""
    from medseg.core.io.nifti import read_nifti
    from medseg.core.scoring import dice
    from medseg.core.seg import read_seg_mask

    truth = read_nifti(study.truth).array > 0
    return dice(read_seg_mask(seg_path, list(study.sop_uids)) > 0, truth)


def _report(service, job, study: DemoStudy, say) -> None:
    detail = next(j for j in service.jobs.study(job.study_uid)["jobs"] if j["id"] == job.id)
    if job.state == JobState.FAILED:
        say(f"demo: job {job.id} failed: {job.error}")
        return
    targets = ", ".join(f"{d['destination']} ({d['state']}, status {d['last_status']})" for d in detail["deliveries"])
    say(f"demo: SEG {job.seg_sop_uid} by {job.model_used} with {job.result.get('lesion_count')} lesion(s) written to "
        f"{job.seg_path} and sent to {targets or 'no destination'}")
    say(f"demo: Dice {seg_dice(Path(job.seg_path), study):.3f} against {study.truth_name} of {study.what}")
