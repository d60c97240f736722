"""The README's main job: once `medseg serve` is up, push a phantom study to it and say where the SEG went."""

from __future__ import annotations

import threading
import time
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


def push_when_ready(service, seed: int, say: Callable[[str], None], timeout_s: float = 900.0) -> threading.Thread:
    def run() -> None:
        from medseg.training.phantom_study import write_phantom_study

        while service.dicom_port is None:
            time.sleep(0.2)
        folder = service.data_dir / "demo" / f"phantom-{seed}"
        info = write_phantom_study(folder, seed)
        node = service.settings.node
        sent = push_study(folder / "dicom", "127.0.0.1" if node.host in ("0.0.0.0", "") else node.host,
                          service.dicom_port, node.ae_title)
        say(f"demo: pushed {sent} instances of phantom seed {seed} as {DEMO_AE}; "
            f"segmenting after the {node.quiet_period_s:g} s quiet period")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = [j for j in service.jobs.jobs(info["study_instance_uid"]) if j.state in (JobState.SENT, JobState.FAILED)]
            if done:
                _report(service, done[-1], say)
                return
            time.sleep(0.5)
        say("demo: no result within the time limit; see GET /studies")

    thread = threading.Thread(target=run, name="medseg-demo", daemon=True)
    thread.start()
    return thread


def _report(service, job, say) -> None:
    study = service.jobs.study(job.study_uid)
    detail = next(j for j in study["jobs"] if j["id"] == job.id)
    if job.state == JobState.FAILED:
        say(f"demo: job {job.id} failed: {job.error}")
        return
    targets = ", ".join(f"{d['destination']} ({d['state']}, status {d['last_status']})" for d in detail["deliveries"])
    say(f"demo: SEG {job.seg_sop_uid} with {job.result.get('lesion_count')} lesion(s) written to {job.seg_path}"
        f" and sent to {targets or 'no destination'}")
