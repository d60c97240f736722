"""The dashboard's pages in process (FastAPI's test client on a running service, no browser): the
edges a browser test would be slow to reach. The browser tests are in tests/test_dashboard.py."""

from __future__ import annotations

from tests.node_helpers import authorize, events
from tests.test_dicom_node import running


def _login(service, client, name: str, roles) -> str:
    """A session for a new token holding ``roles``; returns the token."""
    secret = authorize(service, client, name, roles)
    del client.headers["Authorization"]  # the dashboard reads its cookie, never the header
    answer = client.post("/ui/login", data={"token": secret, "next": "/ui/"}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return secret


def test_pages_need_a_session_and_the_login_goes_back_only_to_the_dashboard(tmp_path):
    with running(tmp_path) as (service, client):
        del client.headers["Authorization"]
        answer = client.get("/ui/studies?state=sent", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/login?next=%2Fui%2Fstudies%3Fstate%3Dsent"
        secret = authorize(service, client, "dr-view", ["viewer"])
        del client.headers["Authorization"]
        for target in ("https://evil.example/", "//evil.example/ui/", "/ui/\\evil", "/api"):
            answer = client.post("/ui/login", data={"token": secret, "next": target}, follow_redirects=False)
            assert answer.headers["location"] == "/ui/", target  # never another site
        answer = client.post("/ui/login", data={"token": secret, "next": "/ui/models"}, follow_redirects=False)
        assert answer.headers["location"] == "/ui/models"
        cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and v.startswith("medseg_session="))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        assert client.get("/ui/models").status_code == 200
        # the session is the token: revoked, the next page sends the browser back to the login
        service.tokens.revoke("dr-view", actor="test")
        assert client.get("/ui/models", follow_redirects=False).status_code == 303
        assert [e["outcome"] for e in events(service.data_dir, "ui.login")] == ["success"] * 5


def test_errors_on_pages_are_pages_with_the_api_status(tmp_path):
    with running(tmp_path) as (service, client):
        _login(service, client, "dr-view", ["viewer"])
        missing = client.get("/ui/studies/1.2.3.4")
        assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
        assert "Study not found" in missing.text and "<nav>" in missing.text
        assert client.get("/ui/studies/1.2.3.4/jobs/7/lesion1-slice0.png").status_code == 404
        forbidden = client.get("/ui/audit")
        assert forbidden.status_code == 403 and "needs the role auditor" in forbidden.text
        refused = events(service.data_dir, "api.refused")[-1]
        assert refused["status"] == 403 and refused["actor"] == "token:dr-view"
        # the API itself still answers problem details
        api = client.get("/studies/1.2.3.4")
        assert api.status_code == 401 and api.headers["content-type"] == "application/problem+json"


def test_an_admin_or_auditor_lands_on_their_own_pages(tmp_path):
    with running(tmp_path) as (service, client):
        _login(service, client, "it-admin", ["admin"])
        home = client.get("/ui/")
        assert home.status_code == 200 and "have no dashboard page" in home.text and "/ui/studies" not in home.text
        _login(service, client, "dr-audit", ["auditor"])
        home = client.get("/ui/")
        assert 'href="/ui/audit"' in home.text and 'href="/ui/models"' not in home.text


def test_audit_export_as_atna_is_audited(tmp_path):
    with running(tmp_path) as (service, client):
        _login(service, client, "dr-audit", ["auditor"])
        answer = client.get("/ui/audit/export?format=atna&since=2000-01-01T00:00")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/xml")
        lines = answer.text.splitlines()
        assert lines and all(line.startswith("<AuditMessage") for line in lines)
        exported = events(service.data_dir, "audit.exported")[-1]
        assert exported["actor"] == "token:dr-audit" and exported["format"] == "atna" and exported["door"] == "ui"
        bad = client.get("/ui/audit/export?since=yesterday-ish")
        assert bad.status_code == 400 and "not a date and time" in bad.text


def test_without_authentication_every_page_opens_and_forms_still_need_the_csrf_cookie(tmp_path):
    """[auth] enabled = false (loopback only): no login, every role; the first page sets the CSRF cookie."""
    with running(tmp_path, settings_extra={"auth": {"enabled": False}}) as (service, client):
        del client.headers["Authorization"]
        for path in ("/ui/", "/ui/studies", "/ui/models", "/ui/quality", "/ui/worklist", "/ui/audit"):
            assert client.get(path).status_code == 200, path
        csrf = client.cookies.get("medseg_csrf")
        assert csrf
        active = service.registry.active("ct-phantom")
        forged = client.post("/ui/models/ct-phantom/rollback", data={"reason": "x", "to": "2.0.0", "csrf": "nope",
                                                                     "shown_active": active})
        assert forged.status_code == 403 and service.registry.active("ct-phantom") == active
        done = client.post("/ui/models/ct-phantom/rollback", data={"reason": "loopback test", "to": "2.0.0",
                                                                   "csrf": csrf, "shown_active": active})
        assert done.status_code == 200 and "Rolled back ct-phantom 2.1.0 to 2.0.0." in done.text
        assert events(service.data_dir, "model.rolled_back")[-1]["actor"].startswith("api:")


def test_overlay_thumbnails_draw_the_seg_outline_on_the_ct(tmp_path):
    """Each thumbnail is the CT slice with the SEG's outline in red where the lesion is; removed,
    the overlays are drawn again from the SEG and the spool."""
    import io
    import re
    import shutil

    import numpy as np
    from PIL import Image

    from tests.conftest import small_phantom, write_study
    from tests.node_helpers import storescp, storescu
    from tests.test_dicom_node import jobs_in

    # a phantom in which the suite's model finds a tumor (seed chosen with `medseg segment`)
    write_study(tmp_path / "study", small_phantom(seed=2600, shape=(40, 128, 128), spacing=(2.5, 1.5, 1.5), n_tumors=2))
    with storescp(tmp_path / "pacs") as dest_port, running(tmp_path, dest_port) as (service, client):
        assert storescu(service.dicom_port, sorted((tmp_path / "study").glob("*.dcm"))).returncode == 0
        job = jobs_in(service, "sent")[0]
        _login(service, client, "dr-view", ["viewer"])
        page = client.get(f"/ui/studies/{job.study_uid}")
        images = re.findall(r'src="(/ui/studies/[^"]+\.png)"', page.text)
        assert images and job.result["lesion_count"] >= 1
        for url in images:
            picture = np.asarray(Image.open(io.BytesIO(client.get(url).content)).convert("RGB"))
            assert picture.shape == (192, 192, 3)
            red = (picture[..., 0] == 255) & (picture[..., 1] == 48) & (picture[..., 2] == 48)
            assert red.any() and not red.all()  # an outline, drawn on a grey CT
            grey = picture[~red]
            assert (grey[:, 0] == grey[:, 1]).all() and grey[:, 0].std() > 5  # the CT, not a blank square
        overlays = (tmp_path / "data" / "results" / str(job.id) / "overlays")
        first = client.get(images[0]).content
        shutil.rmtree(overlays)
        assert client.get(images[0]).content == first and (overlays / "plan.json").is_file()
        assert client.get(images[0].replace("lesion1-", "lesion9-")).status_code == 404


def test_the_models_page_states_each_measured_mean_dice_with_its_interval(tmp_path):
    """The shipped real-CT model: its held-out mean Dice with the 95 % interval its manifest records."""
    import json

    from tests.conftest import REPO

    metrics = json.loads((REPO / "models" / "ct-tumor" / "3.0.0" / "manifest.json").read_text())["metrics"]
    low, high = metrics["holdout_real_sts"]["mean_dice_ci95"]
    with running(tmp_path, settings_extra={"default_model": "ct-tumor/3.0.0"}) as (service, client):
        _login(service, client, "ml", ["ml-engineer"])
        text = client.get("/ui/models").text
        mean = metrics["holdout_real_sts"]["mean_dice"]
        assert f"holdout real sts</th><td>mean Dice {mean} (95 % CI {low:.2f}–{high:.2f})" in text
