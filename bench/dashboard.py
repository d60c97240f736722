"""Benchmark: what the dashboard's pages cost against the API's JSON answers for the same data, in
one run (issue 20).

``medseg serve`` (embedded default, authentication off on loopback) segments 3 studies of
60 x 512 x 512 (synthetic CT phantoms with tumors, the suite's phantom model); then each page and
its JSON peer are fetched over real HTTP (httpx), repeated, and the medians compared:

* one study: ``GET /ui/studies/{uid}`` (first view: the lesion plan is computed from the SEG and
  the spool; later views: read back) against ``GET /studies/{uid}`` (JSON);
* its overlay thumbnails: first render (decode the CT slice and the SEG, draw, cache) against a
  cached one;
* the studies list and the overview against ``GET /studies`` and ``GET /ready``;
* the quality and models pages against ``GET /monitoring/summary`` and ``GET /models``.

No timing is asserted anywhere.

    python bench/dashboard.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import small_phantom, write_study  # noqa: E402 - after the path
from tests.node_helpers import free_port, node_toml, storescp, storescu, wait_for  # noqa: E402


def timed(client: httpx.Client, url: str) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    answer = client.get(url)
    elapsed = time.perf_counter() - start
    assert answer.status_code == 200, (url, answer.status_code, answer.text[:200])
    return elapsed, answer


def median_ms(client: httpx.Client, url: str, repeats: int) -> float:
    return 1000 * statistics.median(timed(client, url)[0] for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medseg-bench-ui-") as tmp:
        work = Path(tmp)
        folders = []
        for i in range(3):
            folders.append(work / f"study{i}")
            write_study(folders[-1], small_phantom(seed=5100 + i, shape=(60, 512, 512), spacing=(2.5, 0.78, 0.78),
                                                   n_tumors=3))
        with storescp(work / "pacs") as dest_port:
            http, dicom = free_port(), free_port()
            (work / "medseg.toml").write_text(f"""
default_model = "ct-phantom/2.1.0"
[service]
data_dir = "{work / 'data'}"
http_port = {http}
poll_interval_s = 0.2
[auth]
enabled = false
""" + node_toml(dicom, dest_port))
            log = open(work / "serve.log", "w")  # noqa: SIM115 - closed below
            proc = subprocess.Popen([sys.executable, "-m", "medseg", "serve", "--config", str(work / "medseg.toml")],
                                    stdout=log, stderr=subprocess.STDOUT)
            base = f"http://127.0.0.1:{http}"
            try:
                with httpx.Client(base_url=base, timeout=120) as client:
                    wait_for(lambda: _ok(client, "/ready"), 180, what="medseg serve")
                    for folder in folders:
                        assert storescu(dicom, sorted(folder.glob("*.dcm"))).returncode == 0
                    wait_for(lambda: all(s["states"] == {"sent": 1} for s in client.get("/studies").json()["studies"])
                             and len(client.get("/studies").json()["studies"]) == 3, 600, what="3 studies sent")
                    report(client, args.repeats)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
                log.close()


def _ok(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.HTTPError:
        return False


def report(client: httpx.Client, repeats: int) -> None:
    studies = client.get("/studies").json()["studies"]
    uid = max(studies, key=lambda s: s["lesions"] or 0)["study_uid"]
    first_page, page = timed(client, f"/ui/studies/{uid}")
    images = re.findall(r'src="(/ui/studies/[^"]+\.png)"', page.text)
    cold = [timed(client, url)[0] for url in images]
    rows = [
        ("one study: first view", 1000 * first_page, f"/studies/{uid}"),
        ("one study: later views", median_ms(client, f"/ui/studies/{uid}", repeats), f"/studies/{uid}"),
        ("thumbnail: first request", 1000 * statistics.median(cold), None),
        ("thumbnail: cached", 1000 * statistics.median(timed(client, images[0])[0] for _ in range(repeats)), None),
        ("studies list", median_ms(client, "/ui/studies", repeats), "/studies"),
        ("overview", median_ms(client, "/ui/", repeats), "/ready"),
        ("models", median_ms(client, "/ui/models", repeats), "/models"),
        ("quality", median_ms(client, "/ui/quality", repeats), "/monitoring/summary"),
    ]
    print(f"\n3 studies of 60 x 512 x 512 segmented; the study shown has {len(images)} thumbnails; "
          f"medians of {repeats} requests over loopback HTTP")
    print(f"{'page':28} {'page ms':>9} {'peer':22} {'peer ms':>9} {'ratio':>7}")
    for name, ms, peer in rows:
        if peer is None:
            print(f"{name:28} {ms:9.1f}")
            continue
        peer_ms = median_ms(client, peer, repeats)
        print(f"{name:28} {ms:9.1f} {'GET ' + peer.replace(uid, '{uid}'):22} {peer_ms:9.1f} {ms / peer_ms:6.1f}x")


if __name__ == "__main__":
    main()
