"""Model registry, promotion gate and per-study fallback, with real model versions.

The two shipped versions (1.0.0, 1.1.0: trained differently) are copied into a temporary model
store, and broken versions are *derived* from 1.1.0 the way real incidents look: weights
corrupted on disk, NaN in a layer, a manifest whose window size makes the network raise, a
network with the wrong number of output channels, an inference setting far too slow for the
time budget.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
import torch

from medseg.config import NodeSettings, ServiceSettings, Settings
from medseg.models import gate
from medseg.models.manifest import ModelManifest
from medseg.models.store import build_network
from tests.cli_helpers import medseg
from tests.conftest import REPO
from tests.node_helpers import authorize, events, free_port, storescp, storescu, wait_for

pytestmark = pytest.mark.model
SHIPPED = REPO / "models" / "ct-phantom"


def _derive(store: Path, version: str, *, weights=None, manifest=None, corrupt=False) -> str:
    """A new version folder from 1.1.0, with changed weights and/or manifest fields."""
    src, dst = store / "1.1.0", store / version
    shutil.copytree(src, dst)
    m = ModelManifest.load(dst)
    data = m.model_dump(mode="json")
    data["version"] = version
    if manifest:
        manifest(data)
    if weights:
        net = build_network(ModelManifest.model_validate(data))
        state = torch.load(src / "model.pt", weights_only=True)
        state = weights(net, state)
        torch.save(state, dst / "model.pt")
        data["weights"]["sha256"] = hashlib.sha256((dst / "model.pt").read_bytes()).hexdigest()
    (dst / "manifest.json").write_text(json.dumps(data, indent=2))
    if corrupt:
        blob = bytearray((dst / "model.pt").read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        (dst / "model.pt").write_bytes(bytes(blob))
    return version


def _nan(net, state):
    key = [k for k in state if k.endswith("bias")][-1]
    state[key] = torch.full_like(state[key], float("nan"))
    return state


def _three_channels(net, state):
    return net.state_dict()  # a freshly initialised network with out_channels=3


BROKEN = {
    "corrupt": dict(corrupt=True),
    "nan": dict(weights=_nan),
    "raises": dict(manifest=lambda d: d["input"].update(roi_size_zyx=[30, 62, 62])),
    "wrong-shape": dict(manifest=lambda d: d["architecture"]["args"].update(out_channels=3), weights=_three_channels),
    "too-slow": dict(manifest=lambda d: d["inference"].update(overlap=0.98, sw_batch_size=1)),  # >2,000 windows
}


@pytest.fixture
def store(tmp_path) -> Path:
    root = tmp_path / "models"
    (root / "ct-phantom").mkdir(parents=True)
    for v in ("1.0.0", "1.1.0"):
        shutil.copytree(SHIPPED / v, root / "ct-phantom" / v)
    return root


def _cli(tmp_path, store, *args):
    env = {"MEDSEG_SERVICE__DATA_DIR": str(tmp_path / "data"), "MEDSEG_MODELS_ROOT": str(store),
           "MEDSEG_DEFAULT_MODEL": "ct-phantom/1.1.0"}
    return medseg("models", *args, env=env)


def test_promote_and_rollback_through_the_gate(tmp_path, store):
    bad = _derive(store / "ct-phantom", "1.2.0", corrupt=True)
    assert _cli(tmp_path, store, "promote", "1.0.0", "--reason", "compare").returncode == 0
    refused = _cli(tmp_path, store, "promote", bad, "--reason", "new model")
    assert refused.returncode == 2 and "refused by the promotion gate" in refused.stderr and "sha256" in refused.stderr
    back = _cli(tmp_path, store, "rollback", "--reason", "1.0.0 misses tumors")
    assert back.returncode == 0 and "1.0.0 -> 1.1.0" in back.stdout
    to_bad = _cli(tmp_path, store, "rollback", "--to", bad, "--reason", "try")
    assert to_bad.returncode == 2 and "gate" in to_bad.stderr
    shown = json.loads(_cli(tmp_path, store, "show", "1.1.0").stdout)
    assert shown["active"] is True
    assert [(h["action"], h["to"]) for h in shown["history"]] == [("bootstrap", "1.1.0"), ("promote", "1.0.0"),
                                                                  ("rollback", "1.1.0")]
    assert [h["actor"].startswith("cli:") for h in shown["history"][1:]] == [True, True]
    gate_events = events(tmp_path / "data", "model.gate_failed")
    assert len(gate_events) == 2 and all(e["outcome"] == "failure" for e in gate_events)


def test_gate_rejects_a_version_that_does_not_reproduce_its_reference(tmp_path, store):
    other = _derive(store / "ct-phantom", "1.2.0", manifest=lambda d: d["postprocess"].update(min_peak_probability=1.0))
    result = gate.check(store / "ct-phantom" / other)
    assert not result.ok and "not reproduced" in result.reason and result.dice < 0.99
    assert gate.check(store / "ct-phantom" / "1.0.0").ok


def _service(tmp_path, store, dest_port, budget=600.0):
    from medseg.app.api.main import create_app
    from medseg.app.serve import Service

    settings = Settings(models_root=store, default_model="ct-phantom/1.1.0",
                        node=NodeSettings(port=free_port(), allowed_calling_aets=("TESTPACS",), quiet_period_s=1.0,
                                          disk_floor_mb=0, destinations=[{"name": "pacs", "ae_title": "TESTPACS",
                                                                          "host": "127.0.0.1", "port": dest_port}]),
                        service=ServiceSettings(data_dir=tmp_path / "data", poll_interval_s=0.1,
                                                model_time_budget_s=budget))
    service = Service(settings)
    return service, create_app(service)


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_failing_active_version_falls_back_per_study(tmp_path, store, study_dir, kind):
    from fastapi.testclient import TestClient

    bad = _derive(store / "ct-phantom", "1.2.0", **BROKEN[kind])
    with storescp(tmp_path / "pacs") as dest_port:
        service, app = _service(tmp_path, store, dest_port, budget=5.0)  # 1.1.0 needs < 1 s on this study
        with TestClient(app):
            # the incident: a version that would fail its gate is active (switched without the gate)
            service.registry.switch("ct-phantom", bad, action="promote", actor="test", reason="incident under test")
            assert storescu(service.dicom_port, sorted(study_dir.glob("*.dcm"))).returncode == 0
            job = wait_for(lambda: [j for j in service.jobs.jobs() if j.state in ("sent", "failed")], 180)[0]
            assert job.state == "sent", job.error
            assert job.model == f"ct-phantom/{bad}" and job.model_used == "ct-phantom/1.1.0"
            assert job.result["fallback"] is True and job.result["fallback_reasons"][0]["version"] == bad
            seg = pydicom.dcmread(wait_for(lambda: list((tmp_path / "pacs").glob("SG*")), 20)[0])
            algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
            assert algorithm.AlgorithmVersion == "1.1.0", "the SEG names the version actually used"
            assert events(service.data_dir, "model.failed")[0]["model"] == f"ct-phantom:{bad}"
            assert events(service.data_dir, "model.fallback_used")[0]["model"] == "ct-phantom:1.1.0"
            assert events(service.data_dir, "alert.model_fallback")


def test_no_good_version_left_fails_visibly(tmp_path, store, study_dir):
    from fastapi.testclient import TestClient

    for v in ("1.0.0", "1.1.0"):  # every version on disk is corrupted
        blob = bytearray((store / "ct-phantom" / v / "model.pt").read_bytes())
        blob[100] ^= 0xFF
        (store / "ct-phantom" / v / "model.pt").write_bytes(bytes(blob))
    with storescp(tmp_path / "pacs") as dest_port:
        service, app = _service(tmp_path, store, dest_port)
        with TestClient(app) as client:
            assert client.get("/ready").status_code == 503
            assert storescu(service.dicom_port, sorted(study_dir.glob("*.dcm"))).returncode == 0
            job = wait_for(lambda: [j for j in service.jobs.jobs() if j.state == "failed"], 120)[0]
            assert job.error_code == "model.no_good_version" and "1.1.0" in job.error
            assert not list((tmp_path / "pacs").glob("SG*")), "never a SEG from a broken model"
            assert events(service.data_dir, "alert.job_failed")


def test_rollback_lists_exactly_the_studies_the_bad_version_touched(tmp_path, store):
    from fastapi.testclient import TestClient

    from tests.conftest import small_phantom, write_study

    studies = []
    for i in range(3):
        folder = tmp_path / f"study{i}"
        datasets = write_study(folder, small_phantom(seed=60 + i, shape=(16, 48, 48), n_tumors=1))
        studies.append((folder, str(datasets[0].StudyInstanceUID)))
    with storescp(tmp_path / "pacs") as dest_port:
        service, app = _service(tmp_path, store, dest_port)
        with TestClient(app) as client:
            authorize(service, client)

            def push_and_wait(i, n_sent):
                assert storescu(service.dicom_port, sorted(studies[i][0].glob("*.dcm"))).returncode == 0
                wait_for(lambda: len([j for j in service.jobs.jobs() if j.state == "sent"]) == n_sent, 120)

            push_and_wait(0, 1)  # on 1.1.0
            assert _cli(tmp_path, store, "promote", "1.0.0", "--reason", "evaluate older model").returncode == 0
            push_and_wait(1, 2)  # on 1.0.0
            push_and_wait(2, 3)  # on 1.0.0
            back = _cli(tmp_path, store, "rollback", "--reason", "1.0.0 misses tumors", "--reprocess")
            assert back.returncode == 0, back.stderr
            listed = {line.split()[1] for line in back.stdout.splitlines() if line.strip().startswith("study ")}
            assert listed == {studies[1][1], studies[2][1]}
            assert "since it became active: 2" in back.stdout
            assert service.registry.active("ct-phantom") == "1.1.0"
            registry = client.get("/models").json()
            assert registry["active"] == "1.1.0" and registry["versions"][:2] == ["1.0.0", "1.1.0"]  # (+ the shipped ones)
            assert [h["action"] for h in registry["history"]] == ["bootstrap", "promote", "rollback"]
            rolled = events(service.data_dir, "model.rolled_back")
            assert rolled[0]["model"] == "ct-phantom:1.1.0" and rolled[0]["reason"] == "1.0.0 misses tumors"
            worklist = client.get("/worklist").json()["items"]
            assert {i["study_uid"] for i in worklist} == listed and {i["model"] for i in worklist} == {"ct-phantom/1.0.0"}
            cli_list = subprocess.run([sys.executable, "-m", "medseg", "review", "worklist", "--format", "json"],
                                      capture_output=True, text=True,
                                      env={"MEDSEG_SERVICE__DATA_DIR": str(tmp_path / "data"),
                                           "MEDSEG_MODELS_ROOT": str(store), "PATH": "/usr/bin:/bin"})
            assert {i["study_uid"] for i in json.loads(cli_list.stdout)} == listed
            # --reprocess: both studies run again on 1.1.0 and their new SEGs arrive as new series
            redone = wait_for(lambda: (lambda js: js if len(js) == 2 else None)(
                [j for j in service.jobs.jobs() if j.revision == 2 and j.state == "sent"]), 120)
            assert {j.study_uid for j in redone} == listed and {j.model_used for j in redone} == {"ct-phantom/1.1.0"}
            segs = [pydicom.dcmread(p, stop_before_pixels=True) for p in (tmp_path / "pacs").glob("SG*")]
            assert len(segs) == 5 and len({d.SeriesInstanceUID for d in segs}) == 5, "never overwriting a SEG"


def test_shadow_results_are_stored_and_compared_never_sent(tmp_path, store, study_dir):
    from fastapi.testclient import TestClient

    with storescp(tmp_path / "pacs") as dest_port:
        service, app = _service(tmp_path, store, dest_port)
        with TestClient(app):
            assert _cli(tmp_path, store, "shadow", "1.0.0", "--reason", "candidate evaluation").returncode == 0
            assert storescu(service.dicom_port, sorted(study_dir.glob("*.dcm"))).returncode == 0
            wait_for(lambda: events(service.data_dir, "model.shadow_run"), 120, what="the shadow run")
            job = service.jobs.jobs()[0]
            assert job.state == "sent" and job.model_used == "ct-phantom/1.1.0"
            assert (service.data_dir / "results" / str(job.id) / "shadow-1.0.0" / "seg.dcm").is_file()
            import time
            time.sleep(2)
            assert len(list((tmp_path / "pacs").glob("SG*"))) == 1, "the shadow SEG is never sent"
            report = json.loads(_cli(tmp_path, store, "compare", "1.0.0").stdout)
            assert report["studies"] == 1 and report["failures"] == 0 and 0 <= report["dice_mean"] <= 1
            assert report["active"] == ["ct-phantom/1.1.0"] and "latency_ratio_median" in report
            assert service.registry.fallback_chain("ct-phantom") == ["1.1.0"], "a shadow is never a fallback"


def test_rollback_while_a_job_runs(tmp_path, store, study_dir):
    from fastapi.testclient import TestClient

    from tests.conftest import small_phantom, write_study

    slow = _derive(store / "ct-phantom", "1.0.1", manifest=lambda d: d["inference"].update(overlap=0.94, sw_batch_size=1))
    other = tmp_path / "other"
    write_study(other, small_phantom(seed=77, shape=(16, 48, 48), n_tumors=1))
    with storescp(tmp_path / "pacs") as dest_port:
        service, app = _service(tmp_path, store, dest_port)
        with TestClient(app):
            service.registry.switch("ct-phantom", slow, action="promote", actor="test", reason="slow candidate")
            assert storescu(service.dicom_port, sorted(study_dir.glob("*.dcm"))).returncode == 0
            wait_for(lambda: events(service.data_dir, "job.started"), 60, 0.05, what="the job to start")
            back = _cli(tmp_path, store, "rollback", "--to", "1.1.0", "--reason", "too slow")
            assert back.returncode == 0, back.stderr
            assert "state running" in back.stdout, "a study still running on the rolled-back version is listed"
            assert storescu(service.dicom_port, sorted(other.glob("*.dcm"))).returncode == 0
            done = wait_for(lambda: (lambda js: js if len(js) == 2 else None)(
                [j for j in service.jobs.jobs() if j.state == "sent"]), 300)
            assert [j.model_used for j in done] == [f"ct-phantom/{slow}", "ct-phantom/1.1.0"], \
                "the running job finished on the version it started with; the new job used the rolled-back-to one"


def test_the_model_identity_covers_the_manifest_as_well_as_the_weights(tmp_path):
    """Same weights, another manifest: another identity, in the registry's events too."""
    from medseg.app.context import build_context
    from medseg.config import ServiceSettings, Settings
    from medseg.models.manifest import ModelManifest

    root = tmp_path / "models" / "ct-phantom"
    for v in ("1.0.0", "1.1.0"):
        shutil.copytree(SHIPPED / v, root / v)
    broken = json.loads((root / "1.1.0" / "manifest.json").read_text())
    broken["postprocess"]["min_peak_probability"] = 1.0
    twin = root / "1.1.1"
    shutil.copytree(root / "1.1.0", twin)
    (twin / "manifest.json").write_text(json.dumps({**broken, "version": "1.1.1"}))
    a, b = ModelManifest.load(root / "1.1.0"), ModelManifest.load(twin)
    assert a.weights.sha256 == b.weights.sha256 and a.manifest_sha256() != b.manifest_sha256()
    assert a.model_copy(update={"metrics": {"x": 1}}).manifest_sha256() == a.manifest_sha256()  # recorded after
    ctx = build_context(Settings(service=ServiceSettings(data_dir=tmp_path / "data"), models_root=tmp_path / "models",
                                 default_model="ct-phantom/1.0.0")).prepare()
    ctx.registry.switch("ct-phantom", "1.1.1", action="promote", actor="test", reason="twin")
    promoted = events(tmp_path / "data", "model.promoted")
    assert [(e["model"], e["model_sha256"], e["manifest_sha256"]) for e in promoted][-1] == \
        ("ct-phantom:1.1.1", b.weights.sha256, b.manifest_sha256())


def test_the_gate_cannot_be_talked_round_with_an_empty_reference(tmp_path, store):
    """Issue 16: a version that finds none of the reference phantom's tumors cannot record a
    reference (refused and audited, CLI and API); only the ml-engineer may record one; a version
    that agrees with the truth is recorded with how well, and promoted by the same role."""
    from fastapi.testclient import TestClient

    blind = _derive(store / "ct-phantom", "1.2.0", manifest=lambda d: d["input"].update(
        window_hu=[w + 300 for w in d["input"]["window_hu"]]))
    refused = _cli(tmp_path, store, "reference", blind)
    assert refused.returncode == 2 and "[registry.reference_disagrees]" in refused.stderr
    assert "0 of 3 tumors found" in refused.stderr
    # nothing written: the version keeps the reference it was copied with (1.1.0's)
    assert ModelManifest.load(store / "ct-phantom" / blind).reference == ModelManifest.load(store / "ct-phantom" / "1.1.0").reference
    failed = events(tmp_path / "data", "model.gate_failed")
    assert failed[-1]["reason_code"] == "registry.reference_disagrees" and failed[-1]["actor"].startswith("cli:")

    good = _derive(store / "ct-phantom", "1.2.1")
    service, app = _service(tmp_path, store, free_port())
    with TestClient(app) as client:
        viewer = {"Authorization": f"Bearer {service.tokens.create('wall', ['viewer'], actor='t')[0]}"}
        engineer = {"Authorization": f"Bearer {service.tokens.create('on-call', ['ml-engineer'], actor='t')[0]}"}
        assert client.post(f"/models/ct-phantom/{good}/reference", headers=viewer).status_code == 403
        r = client.post(f"/models/ct-phantom/{blind}/reference", headers=engineer)
        assert r.status_code == 409 and "reference_disagrees" in r.json()["detail"]
        r = client.post(f"/models/ct-phantom/{good}/reference", headers=engineer)
        assert r.status_code == 200, r.text
        assert r.json()["truth_dice"] > 0.3 and r.json()["truth_lesions_found"].split("/")[1] == "3"
        recorded = events(service.data_dir, "model.reference_recorded")
        assert recorded[-1]["actor"] == "token:on-call" and recorded[-1]["truth_dice"] == r.json()["truth_dice"]
        r = client.post(f"/models/ct-phantom/{good}/promote", json={"reason": "validated"}, headers=engineer)
        assert r.status_code == 200 and r.json()["active"] == good and r.json()["previous"] == "1.1.0"
        assert service.registry.history("ct-phantom")[-1].actor == "token:on-call"
        # issue 17: the new version is loaded before the promotion answers: ready between studies
        assert client.get("/ready").json()["checks"]["model_loaded"] is True
        # a switch made elsewhere (the CLI's process, an SLO fallback) is loaded by the idle worker
        assert not service.worker.has_model(f"ct-phantom/{blind}")
        service.registry.switch("ct-phantom", blind, action="promote", actor="test", reason="elsewhere")
        wait_for(lambda: service.worker.has_model(f"ct-phantom/{blind}") or None, 30, what="the idle worker's load")
        assert client.get("/ready").status_code == 200
        service.registry.switch("ct-phantom", good, action="promote", actor="test", reason="back")
        assert client.post(f"/models/ct-phantom/{good}/promote", json={"reason": "again"},
                           headers=engineer).status_code == 409  # already active


def test_a_budget_every_version_overruns_is_retried_before_the_study_fails(tmp_path, store, study_dir):
    """Issue 17: with no version left to fall back to, one overrun failed the study. Now the job
    is retried (`budget_attempts`, 3) before it fails, each retry audited."""
    from fastapi.testclient import TestClient

    with storescp(tmp_path / "pacs") as dest_port:
        service, app = _service(tmp_path, store, dest_port, budget=0.001)  # no version can meet it
        with TestClient(app):
            assert storescu(service.dicom_port, sorted(study_dir.glob("*.dcm"))).returncode == 0
            job = wait_for(lambda: [j for j in service.jobs.jobs() if j.state == "failed"], 180)[0]
    assert job.attempts == 3 and job.error_code == "model.no_good_version" and "time budget" in job.error
    requeued = events(service.data_dir, "job.requeued")
    assert [e["reason"] for e in requeued] == [f"every model version overran the time budget; attempt {n} of 3, "
                                                "retried" for n in (1, 2)]


def test_a_busy_host_is_not_blamed_on_the_model(tmp_path, store):
    """Issue 17: past the budget, a window is timed against the model's own best on this host.
    The host is made really busy (CPU burners, several per core) only for the second study."""
    import multiprocessing as mp
    import os as os_

    from fastapi.testclient import TestClient

    from tests.conftest import small_phantom, write_study

    for seed, folder in ((71, "idle"), (72, "busy")):
        write_study(tmp_path / folder, small_phantom(seed=seed, shape=(48, 128, 128), n_tumors=1))
    with storescp(tmp_path / "pacs") as dest_port:
        service, app = _service(tmp_path, store, dest_port, budget=600.0)
        with TestClient(app):
            assert storescu(service.dicom_port, sorted((tmp_path / "idle").glob("*.dcm"))).returncode == 0
            first = wait_for(lambda: [j for j in service.jobs.jobs() if j.state == "sent"], 120)[0]
            inference = first.result["timings_s"]["inference"]
            # a budget the idle host meets with room to spare, and "busy" at twice the model's best
            service.worker.settings = service.settings.model_copy(update={"service": service.settings.service.model_copy(
                update={"model_time_budget_s": max(0.2, inference / 3), "busy_host_factor": 2.0})})
            burners = [mp.Process(target=_burn, daemon=True) for _ in range(4 * (os_.cpu_count() or 2))]
            for b in burners:
                b.start()
            try:
                assert storescu(service.dicom_port, sorted((tmp_path / "busy").glob("*.dcm"))).returncode == 0
                busy = wait_for(lambda: events(service.data_dir, "job.requeued"), 180, what="the busy-host retry")
            finally:
                for b in burners:
                    b.terminate()
            assert "the host is busy" in busy[0]["reason"]
            assert not events(service.data_dir, "model.failed"), "the model is not blamed for a busy host"
            service.worker.settings = service.settings  # the moment has passed: the retry runs
            jobs = wait_for(lambda: (lambda js: js if len(js) == 2 else None)(
                [j for j in service.jobs.jobs() if j.state == "sent"]), 180, what="the retried job")
            assert {j.model_used for j in jobs} == {"ct-phantom/1.1.0"}


def _burn() -> None:
    while True:
        pass


STS_006 = REPO / "tests" / "data" / "sts-ct" / "STS_006"


def test_a_real_case_reference_holds_the_truth_rule(tmp_path, store):
    """A phantom-trained version finds nothing on a real sarcoma: its case reference is refused,
    audited, nothing written (the case reference is for models trained on real CT)."""
    refused = _cli(tmp_path, store, "reference", "1.1.0", "--case", str(STS_006))
    assert refused.returncode == 2 and "[registry.reference_disagrees]" in refused.stderr
    assert "reference case STS_006 disagrees with the truth (0 of 1 tumors found" in refused.stderr
    assert not (store / "ct-phantom" / "1.1.0" / gate.CASE_IMAGE).exists()
    assert events(tmp_path / "data", "model.gate_failed")[-1]["reason_code"] == "registry.reference_disagrees"


def test_the_real_ct_model_keeps_a_real_case_reference(tmp_path):
    """ct-tumor 3.0.0 (trained on real CT, no phantom) is gated on a real sarcoma: its recorded
    reference is reproduced; an altered reference image refuses the version."""
    version = tmp_path / "3.0.0"
    shutil.copytree(REPO / "models" / "ct-tumor" / "3.0.0", version)
    ref = ModelManifest.load(version).reference
    assert ref is not None and ref.image_file == gate.CASE_IMAGE and ref.truth_lesions_found == "1/1"
    assert "CC BY" in ref.source
    result = gate.check(version)
    assert result.ok and result.dice >= 0.99, result.reason
    (version / gate.CASE_IMAGE).write_bytes((version / gate.CASE_IMAGE).read_bytes()[:-10] + b"0123456789")
    altered = gate.check(version)
    assert not altered.ok and "reference image reference_image.nii.gz is missing or altered" in altered.reason
