"""The dashboard in a real browser: Debian's headless Chromium, driven by Selenium through Debian's
chromedriver, against ``medseg serve`` (its own OS process, authentication on) with phantom
studies pushed by dcmtk's storescu and SEGs delivered to dcmtk's storescp.

Each role logs in through the login form with its own API token. Screenshots of every page are
kept under ``build/screenshots`` (``MEDSEG_SCREENSHOTS`` elsewhere) as the run's artifacts; the
README's "Dashboard" section shows them.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pydicom
import pytest

from tests.conftest import small_phantom, write_study
from tests.node_helpers import events, free_port, http_ok, node_toml, storescp, storescu, wait_for

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path(os.environ.get("MEDSEG_SCREENSHOTS", Path(__file__).resolve().parents[1] / "build" / "screenshots"))
STUDIES = 3
ROLES = ("viewer", "radiologist", "ml-engineer", "auditor")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``medseg serve`` with 3 studies segmented and sent; one API token per role; an OpenID
    provider on loopback (oidc-provider-mock: authlib's authorization server) for the login."""
    from oidc_provider_mock import User, run_server_in_thread

    tmp = tmp_path_factory.mktemp("dashboard")
    for i in range(STUDIES):
        write_study(tmp / f"study{i}", small_phantom(seed=2600 + i, shape=(40, 128, 128), spacing=(2.5, 1.5, 1.5),
                                                     n_tumors=2))
    users = [User(sub="dr-oidc", claims={"roles": ["radiology-staff"]}), User(sub="visitor", claims={"roles": []})]
    with storescp(tmp / "pacs") as dest_port, run_server_in_thread(require_nonce=True, user_claims=users) as idp:
        provider = f"http://127.0.0.1:{idp.server_port}"
        (tmp / "jwks.json").write_text(httpx.get(f"{provider}/jwks").text)
        (tmp / "client-secret").write_text("s3cret-of-the-dashboard-client")
        http_port, dicom_port = free_port(), free_port()
        config = tmp / "medseg.toml"
        config.write_text(f"""
[auth.oidc]
issuer = "{provider}"
audience = "medseg-api"
jwks_file = "{tmp / 'jwks.json'}"
role_map = {{"radiology-staff" = "radiologist"}}
login_client_id = "medseg-dashboard"
login_client_secret_file = "{tmp / 'client-secret'}"
authorization_endpoint = "{provider}/oauth2/authorize"
token_endpoint = "{provider}/oauth2/token"
[service]
data_dir = "{tmp / 'data'}"
http_port = {http_port}
poll_interval_s = 0.2
""" + node_toml(dicom_port, dest_port))
        medseg = [sys.executable, "-m", "medseg"]
        tokens = {role: subprocess.run([*medseg, "tokens", "create", f"dr-{role}", "--role", role, "--config", str(config)],
                                       capture_output=True, text=True, check=True).stdout.strip() for role in ROLES}
        log = open(tmp / "serve.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([*medseg, "serve", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{http_port}"
        try:
            wait_for(lambda: http_ok(f"{base}/ready"), 180, what="medseg serve to be ready")
            for i in range(STUDIES):
                assert storescu(dicom_port, sorted((tmp / f"study{i}").glob("*.dcm"))).returncode == 0
            engineer = {"Authorization": f"Bearer {tokens['ml-engineer']}"}

            def all_sent():
                studies = httpx.get(f"{base}/studies", headers=engineer).json()["studies"]
                return len(studies) == STUDIES and all(s["states"] == {"sent": 1} for s in studies)

            wait_for(all_sent, 240, what="every study segmented and sent")
            yield {"base": base, "tokens": tokens, "data": tmp / "data", "config": config, "provider": provider,
                   "pacs": tmp / "pacs"}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            log.close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-extensions", "--window-size=1366,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    driver.implicitly_wait(2)
    try:
        yield driver
    finally:
        driver.quit()


def login(driver, server, role: str, next_path: str = "/ui/") -> None:
    from selenium.webdriver.common.by import By

    driver.get(server["base"] + next_path)
    assert "/ui/login" in driver.current_url  # no session: the page sends the browser to the login
    driver.find_element(By.ID, "token").send_keys(server["tokens"][role])
    click_and_load(driver, driver.find_element(By.CSS_SELECTOR, "form.card button[type=submit]"))
    wait_for(lambda: driver.current_url == server["base"] + next_path, 20, what=f"the login to lead to {next_path}")
    assert f"dr-{role}" in driver.find_element(By.CSS_SELECTOR, "header .who").text


def shoot(driver, name: str) -> Path:
    """A full-page screenshot (beyond the window, through the DevTools protocol) kept as an artifact."""
    from PIL import Image

    SHOTS.mkdir(parents=True, exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}})
    path = SHOTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    colours = Image.open(path).convert("RGB").getcolors(maxcolors=100_000)
    assert colours is None or len(colours) > 20, f"{path} looks blank"  # a page, not an empty screen
    return path


def click_and_load(driver, element) -> None:
    """Click a link or a submit button and wait until the browser has left the old page and
    loaded the new one (an element looked up in between may belong to neither).

    The old page is marked, and the wait is for a complete document without the mark. Selenium's
    ``staleness_of`` on the old page's element is not used: while the document is being replaced,
    ChromeDriver 156 may answer it with an "unknown error" (a node "does not belong to the
    document") instead of a stale element, which failed a CI run. Such answers in the middle of a
    navigation are retried until the new page is there."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("document.documentElement.dataset.leaving = 'yes'")
    element.click()
    WebDriverWait(driver, 60, ignored_exceptions=(WebDriverException,)).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && document.documentElement.dataset.leaving === undefined"))


def nav(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [a.text for a in driver.find_elements(By.CSS_SELECTOR, "header nav a")]


def images_loaded(driver) -> int:
    return driver.execute_script(
        "return [...document.querySelectorAll('img.overlay')].filter(i => i.complete && i.naturalWidth > 0).length")


def test_viewer_follows_a_study_and_sees_no_model_actions(server, browser):
    from selenium.webdriver.common.by import By

    login(browser, server, "viewer")
    assert nav(browser) == ["Overview", "Studies", "Models", "Quality"]
    assert "ready" in browser.find_element(By.ID, "node-state").text
    assert "ct-phantom 2.1.0" in browser.find_element(By.ID, "active-model").text
    assert "sent" in browser.find_element(By.ID, "queue").text
    assert browser.find_element(By.CSS_SELECTOR, ".chart svg")  # throughput and turnaround, inline SVG
    shoot(browser, "overview")

    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Studies"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#studies tr td:first-child a")
    assert len(rows) == STUDIES
    browser.get(server["base"] + "/ui/studies?state=failed")
    assert "No study matches." in browser.find_element(By.ID, "studies").text
    browser.get(server["base"] + "/ui/studies?state=sent&model=ct-phantom%3A2.1.0&calling_ae=TESTPACS")
    rows = browser.find_elements(By.CSS_SELECTOR, "#studies tr td:first-child a")
    assert len(rows) == STUDIES
    shoot(browser, "studies")

    found = [row for row in browser.find_elements(By.CSS_SELECTOR, "#studies tr")[1:]
             if int(row.find_element(By.CSS_SELECTOR, "td.lesions").text or 0) > 0]
    assert found, "no study with a lesion found"
    click_and_load(browser, found[0].find_element(By.TAG_NAME, "a"))  # from the list to the study: timeline, lesions, thumbnails
    timeline = browser.find_element(By.CSS_SELECTOR, "ol.timeline").text
    for step in ("dicom.instances.received", "study.series_complete", "job.started", "job.finished", "seg.created",
                 "seg.sent"):
        assert step in timeline, step
    assert browser.find_elements(By.CSS_SELECTOR, "table.lesions tr")[1:]  # at least one lesion
    wait_for(lambda: images_loaded(browser) >= 3, 60, what="overlay thumbnails drawn")
    shoot(browser, "study")

    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Models"))
    assert browser.find_element(By.ID, "active-version").text == "2.1.0"
    assert not browser.find_elements(By.XPATH, "//button[starts-with(., 'Promote')]")
    assert not browser.find_elements(By.ID, "rollback")
    assert "Model card" in browser.page_source
    shoot(browser, "models-viewer")

    browser.get(server["base"] + "/ui/worklist")  # not in a viewer's navigation, and refused when typed
    assert "Not for your role" in browser.find_element(By.TAG_NAME, "h1").text
    # the API refuses the viewer's promotion anyway, and says why
    refused = httpx.post(f"{server['base']}/models/ct-phantom/2.0.0/promote", json={"reason": "try"},
                         headers={"Authorization": f"Bearer {server['tokens']['viewer']}"})
    assert refused.status_code == 403 and refused.json()["detail"] == "this needs the role ml-engineer"
    # and so does the dashboard's own form endpoint, before the CSRF check
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    refused = httpx.post(f"{server['base']}/ui/models/ct-phantom/rollback", cookies=cookies,
                         data={"reason": "try", "csrf": cookies["medseg_csrf"]}, follow_redirects=False)
    assert refused.status_code == 403 and "Not for your role" in refused.text


def test_rollback_from_the_models_page_fills_the_radiologists_worklist(server, browser):
    from selenium.webdriver.common.by import By

    login(browser, server, "ml-engineer", "/ui/models")
    from selenium.webdriver.support.ui import Select

    form = browser.find_element(By.CSS_SELECTOR, "#rollback form")
    form.find_element(By.NAME, "reason").send_keys("dashboard test: Dice drop reported by radiology")
    click_and_load(browser, form.find_element(By.CSS_SELECTOR, "button"))
    # bootstrapped on 2.1.0, there is no previous good version: the refusal is shown, nothing changes
    assert "no previous good version" in browser.find_element(By.CSS_SELECTOR, "p.msg.bad").text
    assert browser.find_element(By.ID, "active-version").text == "2.1.0"
    form = browser.find_element(By.CSS_SELECTOR, "#rollback form")
    form.find_element(By.NAME, "reason").send_keys("dashboard test: Dice drop reported by radiology")
    Select(form.find_element(By.NAME, "to")).select_by_visible_text("2.0.0")
    click_and_load(browser, form.find_element(By.CSS_SELECTOR, "button"))
    report = browser.find_element(By.ID, "rollback-report").text
    assert "2.1.0 → 2.0.0" in report and f"({STUDIES})" in report
    assert browser.find_element(By.ID, "active-version").text == "2.0.0"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#rollback-report table tr")) == STUDIES + 1
    assert "rolled back (gate passed) by token:dr-ml-engineer" in browser.find_element(By.ID, "version-2.0.0").text
    shoot(browser, "models-rollback")
    browser.refresh()  # the browser posts the form again: refused, the page was made for 2.1.0
    assert "the active version changed since this page was loaded" in browser.find_element(By.CSS_SELECTOR, "p.msg.bad").text
    assert browser.find_element(By.ID, "active-version").text == "2.0.0"
    assert len(events(server["data"], "model.rolled_back")) == 1
    rolled = events(server["data"], "model.rolled_back")
    assert rolled[-1]["actor"].startswith("token:dr-ml-engineer") or "dr-ml-engineer" in rolled[-1]["actor"]
    assert rolled[-1]["reason"] == "dashboard test: Dice drop reported by radiology"
    # a form posted without the session's CSRF value is refused (and audited), nothing changes
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    forged = httpx.post(f"{server['base']}/ui/models/ct-phantom/2.1.0/promote", cookies=cookies,
                        data={"reason": "forged", "csrf": "not-the-cookie"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert httpx.get(f"{server['base']}/models", headers={"Authorization": f"Bearer {server['tokens']['viewer']}"}
                     ).json()["active"] == "2.0.0"

    browser.delete_all_cookies()
    login(browser, server, "radiologist", "/ui/worklist")
    assert "Worklist" in nav(browser) and "Audit" not in nav(browser)
    items = browser.find_elements(By.CSS_SELECTOR, "#worklist form.review")
    assert len(items) == STUDIES
    shoot(browser, "worklist")

    def open_items() -> int:
        browser.refresh()
        return len(browser.find_elements(By.CSS_SELECTOR, "#worklist form.review"))

    for left in range(STUDIES, 0, -1):
        form = browser.find_elements(By.CSS_SELECTOR, "#worklist form.review")[0]
        if left == STUDIES:  # the first as a corrected mask: the SEG the PACS received, uploaded by the browser
            study_uid = form.find_element(By.NAME, "study_uid").get_attribute("value")
            seg = next(p for p in server["pacs"].glob("SG*") if pydicom.dcmread(p).StudyInstanceUID == study_uid)
            form.find_element(By.NAME, "mask").send_keys(str(seg))
        else:  # the others accepted as is
            form.find_element(By.NAME, "accepted").click()
        form.find_element(By.NAME, "reviewer").send_keys("dr-lee")
        click_and_load(browser, form.find_element(By.CSS_SELECTOR, "button"))
        assert "received" in browser.find_element(By.CSS_SELECTOR, "p.msg.ok").text
        wait_for(lambda n=left - 1: open_items() == n, 60, what="the review scored and its item closed")
    scored = events(server["data"], "review.scored")
    assert len(scored) == STUDIES and {e["accepted"] for e in scored} == {True, False}
    assert all(e["dice"] == 1.0 for e in scored)  # the uploaded mask is the SEG itself: no correction
    assert "Nothing to re-review." in browser.find_element(By.ID, "worklist").text

    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Quality"))
    assert "ct-phantom/2.1.0" in browser.page_source
    assert browser.find_element(By.CSS_SELECTOR, ".chart svg")
    shoot(browser, "quality")


def test_auditor_searches_verifies_and_exports(server, browser):
    from selenium.webdriver.common.by import By

    login(browser, server, "auditor", "/ui/audit")
    assert nav(browser) == ["Audit"]
    browser.find_element(By.NAME, "action").send_keys("model.*")
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "form.filters button"))
    rows = browser.find_element(By.ID, "events").text
    assert "model.promoted" in rows
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Verify the chain"))
    assert browser.find_element(By.ID, "verify-result").text.startswith("Chain intact")
    shoot(browser, "audit")
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    exported = httpx.get(browser.find_element(By.ID, "export-jsonl").get_attribute("href"), cookies=cookies)
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert {"ui.login", "audit.read"} <= {e["action"] for e in lines}
    assert events(server["data"], "audit.exported")[-1]["actor"].endswith("dr-auditor")

    browser.get(server["base"] + "/ui/studies")  # an auditor reads the trail, not the studies
    assert "Not for your role" in browser.find_element(By.TAG_NAME, "h1").text
    # a bad token at the login is one clear page and an audit event, never a session
    browser.delete_all_cookies()
    browser.get(server["base"] + "/ui/login")
    browser.find_element(By.ID, "token").send_keys("mst_not-a-token")
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "form.card button[type=submit]"))
    assert "not valid" in browser.find_element(By.CSS_SELECTOR, "p.msg.bad").text
    assert not browser.get_cookies()
    assert events(server["data"], "ui.login")[-1]["outcome"] == "failure"
    shoot(browser, "login")


def test_login_through_the_identity_provider(server, browser):
    """OpenID Connect's code flow: the provider's own login page, back with a code, a verified ID
    token whose roles claim maps to a role; a person with no role and a denied login get no session."""
    from selenium.webdriver.common.by import By

    browser.get(server["base"] + "/ui/worklist")
    click_and_load(browser, browser.find_element(By.ID, "oidc-login"))
    assert browser.current_url.startswith(server["provider"] + "/oauth2/authorize")
    shoot(browser, "login-provider")
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "button[value='dr-oidc']"))
    wait_for(lambda: browser.current_url == server["base"] + "/ui/worklist", 20, what="back on the worklist")
    assert f"oidc:{server['provider']}#dr-oidc" in browser.find_element(By.CSS_SELECTOR, "header .who").text
    assert nav(browser) == ["Overview", "Studies", "Models", "Quality", "Worklist"]
    login = events(server["data"], "ui.login")[-1]
    assert login["outcome"] == "success" and login["method"] == "oidc" and login["roles"] == ["radiologist"]
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "header .who button"))  # log out
    assert "/ui/login" in browser.current_url and not [c for c in browser.get_cookies() if c["name"] == "medseg_session"]

    click_and_load(browser, browser.find_element(By.ID, "oidc-login"))
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "button[value='visitor']"))
    assert "holds no medseg role" in browser.find_element(By.CSS_SELECTOR, "p.msg.bad").text
    click_and_load(browser, browser.find_element(By.ID, "oidc-login"))
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "button[value='deny']"))
    assert "access_denied" in browser.find_element(By.CSS_SELECTOR, "p.msg.bad").text
    assert not [c for c in browser.get_cookies() if c["name"] == "medseg_session"]
    refused = [e for e in events(server["data"], "ui.login") if e["outcome"] == "failure" and e.get("method") == "oidc"]
    assert len(refused) == 2
    # a callback that did not start here (no state cookie, forged code) is refused too
    forged = httpx.get(f"{server['base']}/ui/login/oidc/callback?code=abc&state=xyz")
    assert forged.status_code == 401 and "state mismatch" in forged.text
