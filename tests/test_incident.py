"""The incident scenario, end to end with real components.

Two versions of the shipped model: the default (GOOD) and 9.0.0 (BAD), the same weights with its
intensity window shifted by +300 HU (a plausible packaging mistake; tumors vanish from its view). It passes
the promotion gate, because the gate checks that a version reproduces its *own* reference.

The on-call engineer promotes 9.0.0 (the CLI); studies arrive through the DICOM node; radiologists'
corrections (= the phantom truth) come back through the node (C-STORE of a SEG) and the API.

The bound: every study 9.0.0 segments here loses its whole tumor (voxel FN rate 1.0, standard
deviation 0), so the 95 % interval of the window's mean FN rate is [1.0, 1.0] as soon as the window
may page: the ``voxel-fn-rate`` SLO (<= 0.45, policy fallback) fires at review ``min_reviews`` = 5
and not before (medseg.quality.slo explains the general bound).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from medseg.config import MonitoringSettings
from medseg.core.io.nifti import write_nifti
from medseg.core.seg import write_seg
from medseg.models import gate
from medseg.quality.worklist import Worklist
from medseg.training.config import TUMOR_LABEL
from tests.cli_helpers import medseg
from tests.conftest import PHANTOM_MODEL, SHIPPED_MODEL, small_phantom, write_study
from tests.node_helpers import events, settled, storescu, wait_for
from tests.test_dicom_node import running
from tests.test_drift_alerts import webhook

pytestmark = pytest.mark.model
#: the shipped default (good) and the same weights with the HU window shifted by 50 (bad): it still
#: finds the reference phantom's tumors (Dice 0.35), so its gate reference agrees with the truth and
#: it is promoted, but it misses the tumors of these studies (606, reviewed last, it finds)
GOOD, BAD = PHANTOM_MODEL.rsplit("/", 1)[1], "9.0.0"
GOOD_SEEDS, BAD_SEEDS, AFTER_SEED = (604, 610), (600, 601, 605, 607, 608, 609, 606), 611


@pytest.fixture(scope="module")
def models_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models") / "ct-phantom"
    shutil.copytree(SHIPPED_MODEL, root / GOOD)
    bad = root / BAD
    shutil.copytree(SHIPPED_MODEL, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["version"] = BAD
    manifest["input"]["window_hu"] = [w + 50 for w in manifest["input"]["window_hu"]]
    (bad / "manifest.json").write_text(json.dumps(manifest, indent=2))
    gate.make_reference(bad)
    return root.parent


def phantom(seed):
    p = small_phantom(seed=seed, shape=(32, 128, 128), spacing=(3.0, 2.5, 2.5), n_tumors=1)
    assert p.truth.array.any(), "every study of the scenario has a tumor"
    return p


def push(service, tmp_path, seed) -> tuple[str, object, list]:
    p = phantom(seed)
    datasets = write_study(tmp_path / f"study-{seed}", p)
    assert storescu(service.dicom_port, sorted((tmp_path / f"study-{seed}").glob("*.dcm"))).returncode == 0
    return str(datasets[0].StudyInstanceUID), p, datasets


def sent(service, n):
    return wait_for(lambda: (lambda js: js if len(js) >= n else None)(
        [j for j in service.jobs.jobs() if j.state == "sent"]), 120, what=f"{n} SEGs sent")


def cli(service, *args):
    return medseg(*args, env={**os.environ, "MEDSEG_SERVICE__DATA_DIR": str(service.data_dir),
                              "MEDSEG_MODELS_ROOT": str(service.settings.models_root)})


def test_degraded_model_is_caught_by_reviews_and_rolled_back(tmp_path, models_root):
    with webhook() as (url, hooks, _), running(
            tmp_path, models_root=models_root,
            settings_extra={"default_model": f"ct-phantom/{GOOD}",
                            "monitoring": MonitoringSettings(webhook_url=url, webhook_backoff_s=0.05)}) as (service, client):
        good = [push(service, tmp_path, s)[0] for s in GOOD_SEEDS]
        sent(service, len(good))

        promoted = cli(service, "models", "promote", BAD, "--reason", "new release")
        assert promoted.returncode == 0, promoted.stderr
        bad = {}
        for seed in BAD_SEEDS:
            uid, p, datasets = push(service, tmp_path, seed)
            bad[uid] = (p, datasets)
        jobs = sent(service, len(good) + len(bad))
        assert {j.study_uid for j in jobs if j.model_used == f"ct-phantom/{BAD}"} == set(bad)

        # radiologists correct the first five: two through the DICOM node, three through the API
        order = list(bad)
        for i, uid in enumerate(order[:5]):
            p, datasets = bad[uid]
            if i < 2:
                write_seg(tmp_path / f"fix-{i}.dcm", p.truth.array, datasets, [TUMOR_LABEL], model_name="viewer",
                          model_version="1", ground_truth=True, series_number=9100 + i)
                assert storescu(service.dicom_port, [tmp_path / f"fix-{i}.dcm"], extra=("-R",)).returncode == 0
                wait_for(lambda i=i: len(client.get("/reviews").json()["reviews"]) > i or None, 30, what="review in")
            else:
                write_nifti(p.truth, tmp_path / f"fix-{i}.nii.gz")
                with open(tmp_path / f"fix-{i}.nii.gz", "rb") as f:
                    settled(client, client.post("/reviews", data={"study_uid": uid, "reviewer": "rad-1"},
                                                files={"mask": ("fix.nii.gz", f)}))
            review = client.get("/reviews").json()["reviews"][0]
            assert review["fn_rate"] == pytest.approx(1.0) and review["model"] == f"ct-phantom/{BAD}"
            if i + 1 < 5:
                assert client.get("/alerts").json()["alerts"] == [], f"after review {i + 1}"
        # the fifth review was answered at once; the SLOs and the fallback followed in the background
        wait_for(lambda: client.get("/models").json()["active"] == GOOD or None, 60, what="the fallback")
        raised = wait_for(lambda: (lambda a: a if len(a) == 2 and all(x["state"] == "resolved" for x in a) else None)(
            client.get("/alerts").json()["alerts"]), 30, what="both alerts, resolved by the rollback")

        # both SLOs fire at review 5 (0 of 5 tumors found, too); the FN-rate one's fallback policy rolled BAD back,
        # and the rollback ended both episodes (BAD is no longer active; promoted again, it would page anew)
        assert {(a["name"], a["policy"]) for a in raised} == {("voxel-fn-rate", "fallback"),
                                                             ("lesion-sensitivity", "alert")}
        assert all(a["state"] == "resolved" and a["evidence"]["resolved_with"]["closed_by"] == "rollback" for a in raised)
        assert client.get("/alerts", params={"state": "firing"}).json()["alerts"] == []
        alert = next(a for a in raised if a["name"] == "voxel-fn-rate")
        assert (alert["kind"], alert["name"], alert["model"], alert["policy"]) == \
            ("slo", "voxel-fn-rate", f"ct-phantom/{BAD}", "fallback")
        assert alert["evidence"]["reviews"] == 5 and alert["evidence"]["long"]["low"] == pytest.approx(1.0)
        assert alert["action"].startswith(f"rolled back ct-phantom/{BAD} -> ct-phantom/{GOOD}; 7 affected")
        assert all(uid in alert["action"] for uid in bad), "the page lists the affected studies"
        assert {a["study_uid"] for a in alert["evidence"]["affected_studies"]} == set(bad)
        assert client.get("/models").json()["active"] == GOOD

        # affected = exactly the studies BAD segmented; all on the worklist, the reviewed ones closed
        items = Worklist(service.engine, service.events).items()
        assert {i.study_uid for i in items} == set(bad)
        assert {i.study_uid for i in items if i.closed_at is None} == set(order[5:])
        assert {w["study_uid"] for w in client.get("/worklist").json()["items"]} == set(order[5:])

        # a sixth correction closes its worklist item
        settled(client, client.post("/reviews", data={"study_uid": order[5], "accepted": "false"},
                                    files={"mask": ("m.dcm", _seg_bytes(tmp_path, *bad[order[5]]))}))
        assert {w["study_uid"] for w in client.get("/worklist").json()["items"]} == {order[6]}

        # new studies go to the good version again
        after, _, _ = push(service, tmp_path, AFTER_SEED)
        sent(service, len(good) + len(bad) + 1)
        assert [j.model_used for j in service.jobs.jobs(after)] == [f"ct-phantom/{GOOD}"]

        # every sink: webhook, Prometheus, audit; the summary and the report agree
        wait_for(lambda: hooks or None, 15, what="webhook POST")
        wait_for(lambda: len(hooks) >= 2 or None, 15, what="both alerts at the webhook")
        hook = next(h for h in hooks if h["name"] == "voxel-fn-rate")
        assert hook["action"].startswith("rolled back") and hook["evidence"]["reviews"] == 5
        assert {a["study_uid"] for a in hook["evidence"]["affected_studies"]} == set(bad)
        metrics = client.get("/metrics").text
        assert f'medseg_slo_breached{{model="ct-phantom/{BAD}",slo="voxel-fn-rate"}} 1.0' in metrics
        assert f'medseg_alerts_firing{{kind="slo",model="ct-phantom/{BAD}",name="voxel-fn-rate"}} 1.0' not in metrics
        summary = client.get("/monitoring/summary", params={"model": f"ct-phantom:{BAD}"}).json()
        assert summary["models"][0]["window"]["reviews"] == 6
        assert [s["breached"] for s in summary["models"][0]["slos"] if s["slo"] == "voxel-fn-rate"] == [True]
        report = cli(service, "monitor", "report", "--png", str(tmp_path / "report.png"))
        assert report.returncode == 0, report.stderr
        assert "BREACHED" in report.stdout and (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"

        _assert_the_audit_tells_the_story(service, client, order, good, alert["id"])
        # the trail vouches for the registry history and the reviews the SLO decided on
        verified = cli(service, "audit", "verify")
        assert verified.returncode == 0 and "audit chain intact" in verified.stdout, verified.stderr


def _seg_bytes(tmp_path, p, datasets) -> bytes:
    write_seg(tmp_path / "sixth.dcm", p.truth.array, datasets, [TUMOR_LABEL], model_name="viewer", model_version="1",
              ground_truth=True, series_number=9200)
    return (tmp_path / "sixth.dcm").read_bytes()


def _assert_the_audit_tells_the_story(service, client, bad_order, good, alert_id):
    story = [e for e in events(service.data_dir) if e["action"] in (
        "model.promoted", "job.finished", "review.scored", "alert.slo_breached", "model.rolled_back",
        "review.worklist_added")]
    actions = [e["action"] for e in story]
    promoted = next(i for i, e in enumerate(story) if e["action"] == "model.promoted" and e["model"] == f"ct-phantom:{BAD}")
    breached = actions.index("alert.slo_breached")
    rolled = actions.index("model.rolled_back")
    assert promoted < breached < rolled
    assert actions[:promoted].count("job.finished") == len(good)
    assert actions[promoted:breached].count("review.scored") == 5
    alert = next(e for e in story if e["action"] == "alert.slo_breached" and e["alert_id"] == alert_id)
    assert alert["model"] == f"ct-phantom:{BAD}" and alert["policy"] == "fallback" and len(alert["evidence"]["review_ids"]) == 5
    assert story.index(alert) < rolled
    rollback = story[rolled]
    assert rollback["actor"] == "monitor" and f"SLO voxel-fn-rate breached (alert {alert_id})" in rollback["reason"]
    assert actions[rolled:].count("review.worklist_added") == len(bad_order)

    timeline = client.get(f"/audit/studies/{bad_order[0]}/timeline").json()["events"]
    seen = [e["action"] for e in timeline]
    for step in ("dicom.instances.received", "job.queued", "seg.created", "job.finished", "review.received",
                 "review.scored", "review.worklist_added"):
        assert step in seen, step
    assert next(e for e in timeline if e["action"] == "job.finished")["model"] == f"ct-phantom:{BAD}"
