"""`medseg backup` / `medseg restore` (issue 18): a backup taken while the service runs restores
into a data directory whose audit trail verifies, whose jobs find their results, and whose
pseudonyms are unchanged; a damaged backup or a non-empty target is refused in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import small_phantom, write_study
from tests.node_helpers import events, storescu
from tests.test_dicom_node import jobs_in, running

pytestmark = pytest.mark.model


def medseg(*args, data_dir):
    env = {**os.environ, "MEDSEG_SERVICE__DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "medseg", *map(str, args)], capture_output=True, text=True, env=env)


def test_backup_while_serving_then_restore_after_losing_the_data_dir(tmp_path):
    phantom = small_phantom(seed=613, shape=(24, 96, 96), spacing=(3.0, 2.5, 2.5), n_tumors=1)
    write_study(tmp_path / "study", phantom)
    data = tmp_path / "data"
    with running(tmp_path) as (service, client):
        assert storescu(service.dicom_port, sorted((tmp_path / "study").glob("*.dcm"))).returncode == 0
        job = jobs_in(service, "sent")[0]
        made = medseg("backup", tmp_path / "backups", data_dir=data)  # the service is still running
        assert made.returncode == 0, made.stderr
        pseudonym = events(data, "dicom.instances.received")[0]["patient"]
    (backup,) = (tmp_path / "backups").iterdir()
    assert made.stdout.startswith(f"backup {backup}:") and "database sqlite" in made.stdout
    assert not (backup / "audit-chain.key").exists(), "the chain key is never in a backup"
    assert events(data, "service.backed_up")

    # a damaged backup and a non-empty target are refused, nothing touched
    refused = medseg("restore", backup, data_dir=data)
    assert refused.returncode == 2 and "[restore.not_empty]" in refused.stderr
    damaged = tmp_path / "damaged"
    shutil.copytree(backup, damaged)
    next((damaged / "results").rglob("seg.dcm")).write_bytes(b"x")
    bad = medseg("restore", damaged, data_dir=tmp_path / "elsewhere")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "[backup.corrupt]" in bad.stderr

    # the disk is lost; the chain key comes back from its own, separate copy
    lost = tmp_path / "lost"
    data.rename(lost)
    restored = medseg("restore", backup, data_dir=data)
    assert restored.returncode == 0, restored.stderr
    assert "the chain key is not at" in restored.stdout
    shutil.copy2(lost / "audit-chain.key", data / "audit-chain.key")
    verified = medseg("audit", "verify", data_dir=data)
    assert verified.returncode == 0 and "audit chain intact" in verified.stdout, verified.stderr + verified.stdout

    with running(tmp_path) as (service, client):  # the restored service knows its study and result
        (again,) = service.jobs.jobs(job.study_uid)
        assert again.id == job.id and os.path.exists(again.seg_path)
        assert client.get(f"/studies/{job.study_uid}").status_code == 200
        assert storescu(service.dicom_port, sorted((tmp_path / "study").glob("*.dcm"))[:1]).returncode == 0
        received = events(data, "dicom.instances.received")
        assert received[-1]["patient"] == pseudonym, "the patient key came back: same pseudonym"
