"""Benchmark: DICOM ingest of `medseg serve` vs dcmtk `storescp`, and end-to-end turnaround, in one run.

1. Ingest: the same `storescu` run (one association, every file of a study) against
   * dcmtk ``storescp`` writing each instance to disk (the peer),
   * a bare pynetdicom SCP whose handler stores nothing (the ceiling of the toolkit medseg's node
     is built on: what any pynetdicom node can reach on this machine), and
   * ``medseg serve`` (SCP + spool with fsync of every instance and its directory),
   for a 200-slice 512x512 CT study and a 1,000-slice study; prints instances/s and the ratio.
   The dcmtk tools run with ``TCP_NODELAY=1`` (Debian's build otherwise leaves Nagle on and
   is ~30x slower, which would flatter us).
2. Turnaround: Orthanc pushes nothing here; ``storescu`` sends the 200-slice study to medseg
   (quiet period 2 s) and Orthanc is the destination: seconds from the last instance
   acknowledged to the SEG acknowledged by Orthanc (the ``seg.sent`` event).

    python bench/ingest.py [--workdir DIR] [--repeats 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.node_helpers import TCP_NODELAY, events, free_port, orthanc, storescp, wait_for, wait_port  # noqa: E402


def make_studies(work: Path, seed: int = 4242) -> dict[str, Path]:
    import pydicom
    from pydicom.uid import generate_uid

    from medseg.training.phantom_study import write_phantom_study

    base = work / "study200"
    if not base.exists():
        write_phantom_study(base, seed, shape=(200, 512, 512), spacing=(2.0, 0.8, 0.8), n_tumors=3)
    big = work / "study1000"
    if not big.exists():
        big.mkdir()
        files = sorted((base / "dicom").glob("*.dcm"))
        study, series = generate_uid(), generate_uid()
        for i in range(1000):  # 200 real slices, cycled, at 1,000 distinct positions
            ds = pydicom.dcmread(files[i % len(files)])
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.InstanceNumber = i + 1
            ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], -900.0 + 1.0 * i]
            ds.save_as(big / f"{i:05d}.dcm")
    return {"200 slices": base / "dicom", "1000 slices": big}


def storescu_seconds(port: int, folder: Path, called: str) -> float:
    files = sorted(str(p) for p in folder.glob("*.dcm"))
    started = time.perf_counter()
    result = subprocess.run(["storescu", "-aet", "BENCH", "-aec", called, "127.0.0.1", str(port), *files],
                            capture_output=True, text=True, env=TCP_NODELAY)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"storescu failed: {result.stderr[-500:]}")
    return elapsed


class MedsegServer:
    def __init__(self, work: Path, quiet_s: float, destination: tuple[str, int] | None = None) -> None:
        self.dicom_port, self.http_port = free_port(), free_port()
        self.data = work / f"medseg-data-{self.dicom_port}"
        dest = "" if destination is None else (
            f'\n[[node.destinations]]\nname = "orthanc"\nae_title = "{destination[0]}"\nhost = "127.0.0.1"\n'
            f'port = {destination[1]}\n')
        send_to = '["orthanc"]' if destination else "[]"
        self.config = work / f"medseg-{self.dicom_port}.toml"
        self.config.write_text(f"""[service]\ndata_dir = "{self.data}"\nhttp_port = {self.http_port}\n
[node]\nport = {self.dicom_port}\nquiet_period_s = {quiet_s}\ndisk_floor_mb = 0\nmax_pdu = 0\nsend_to = {send_to}\n{dest}""")

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "medseg", "serve", "--config", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.dicom_port, 120)
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=60)


class BarePynetdicom:
    """A pynetdicom storage SCP with a handler that returns success and keeps nothing."""

    def __enter__(self):
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        ae = AE("BARE")
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax)
        self.port = free_port()
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda e: 0)])
        return self

    def __exit__(self, *exc):
        self.server.shutdown()


def ingest(studies: dict[str, Path], work: Path, repeats: int) -> list[dict]:
    rows = []
    for name, folder in studies.items():
        n = len(list(folder.glob("*.dcm")))
        best = {"storescp": float("inf"), "bare": float("inf"), "medseg": float("inf")}
        for r in range(repeats):
            out = work / f"storescp-{r}"
            with storescp(out, "STORESCP") as port:
                best["storescp"] = min(best["storescp"], storescu_seconds(port, folder, "STORESCP"))
            shutil.rmtree(out, ignore_errors=True)
            with BarePynetdicom() as bare:
                best["bare"] = min(best["bare"], storescu_seconds(bare.port, folder, "BARE"))
            with MedsegServer(work, quiet_s=3600) as server:  # no job during the measurement
                best["medseg"] = min(best["medseg"], storescu_seconds(server.dicom_port, folder, "MEDSEG"))
            shutil.rmtree(server.data, ignore_errors=True)
        rows.append({"study": name, "instances": n, "storescp_per_s": n / best["storescp"],
                     "bare_pynetdicom_per_s": n / best["bare"], "medseg_per_s": n / best["medseg"],
                     "ratio": best["storescp"] / best["medseg"], "ratio_to_bare": best["bare"] / best["medseg"]})
    return rows


def turnaround(folder: Path, work: Path) -> dict:
    with orthanc(work / "orthanc", {}) as (url, orthanc_port, aet), \
            MedsegServer(work, quiet_s=2, destination=(aet, orthanc_port)) as server:
            wait_for(lambda: _ready(server.http_port), 120, what="medseg ready")
            storescu_seconds(server.dicom_port, folder, "MEDSEG")
            last_ack = dt.datetime.now(dt.timezone.utc)
            sent = wait_for(lambda: _event(server.data, "seg.sent"), 600, 0.05, what="the SEG to reach Orthanc")
            finished = _event(server.data, "job.finished")
            seg_acked = dt.datetime.fromisoformat(sent["time"])
            return {"turnaround_s": (seg_acked - last_ack).total_seconds(), "quiet_period_s": 2.0,
                    "job_s": finished["duration_s"] if finished else None}


def _ready(port: int) -> bool:
    import httpx
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _event(data: Path, action: str) -> dict | None:
    found = events(data, action)
    return found[0] if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="medseg-bench-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"host: {os.cpu_count()} CPU cores; workdir {work}")
    studies = make_studies(work)
    rows = ingest(studies, work, args.repeats)
    print(f"\n{'study':<12} {'instances':>9} {'storescp/s':>11} {'bare pynetdicom/s':>18} {'medseg/s':>9} "
          f"{'medseg/storescp':>16} {'medseg/bare':>12}")
    for r in rows:
        print(f"{r['study']:<12} {r['instances']:>9} {r['storescp_per_s']:>11.1f} {r['bare_pynetdicom_per_s']:>18.1f} "
              f"{r['medseg_per_s']:>9.1f} {r['ratio']:>16.2f} {r['ratio_to_bare']:>12.2f}")
    t = turnaround(studies["200 slices"], work)
    print(f"\nturnaround, 200 slices, quiet period {t['quiet_period_s']:g} s: last instance acknowledged -> SEG "
          f"acknowledged by Orthanc: {t['turnaround_s']:.1f} s (segmentation job {t['job_s']} s)")
    print(json.dumps({"ingest": rows, "turnaround": t}))


if __name__ == "__main__":
    main()
