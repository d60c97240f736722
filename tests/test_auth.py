"""Authentication and roles of the HTTP API (medseg.app.auth): API tokens, OIDC JWTs checked
against a locally generated key pair and JWKS file (no network), 401/403 as problem details,
refusals audited, the principal as the actor, and the serve-time exposure rules."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from medseg.app.auth.roles import Role
from tests.node_helpers import events
from tests.test_dicom_node import running

PROBLEM = "application/problem+json"
ISSUER, AUDIENCE = "https://idp.hospital.example/realms/radiology", "medseg"


def _token(service, client, name, *roles, **kwargs) -> dict:
    secret, _ = service.tokens.create(name, roles, actor="test", **kwargs)
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def api(tmp_path):
    with running(tmp_path) as (service, client):
        client.headers.pop("Authorization")  # running() authorizes every role; these tests choose
        yield service, client


def test_anonymous_calls_get_401_problem_details_and_are_audited(api):
    service, client = api
    for method, path in (("get", "/studies"), ("get", "/audit"), ("post", "/models/ct-phantom/rollback"),
                         ("get", "/worklist"), ("get", "/tokens")):
        r = getattr(client, method)(path, **({"json": {"reason": "x"}} if method == "post" else {}))
        assert r.status_code == 401, (path, r.text)
        assert r.headers["content-type"] == PROBLEM and r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["status"] == 401 and r.json()["title"] == "Authentication required"
    r = client.get("/studies", headers={"Authorization": "Bearer msk_not-a-token"})
    assert r.status_code == 401
    refused = events(service.data_dir, "api.refused")
    assert len(refused) == 6 and {e["status"] for e in refused} == {401} and {e["outcome"] for e in refused} == {"failure"}
    assert {e["route"] for e in refused} >= {"/studies", "/audit", "/models/{name}/rollback"}
    assert {e["actor"] for e in refused} == {"api:testclient"}
    assert service.registry.active("ct-phantom") == "2.1.0", "nothing changed"


def test_open_routes_need_no_token(api):
    _, client = api
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_each_role_reaches_its_routes_only_and_is_the_actor(api):
    service, client = api
    viewer = _token(service, client, "wall-display", "viewer")
    auditor = _token(service, client, "compliance", "auditor")
    radiologist = _token(service, client, "dr-lee", "radiologist")
    engineer = _token(service, client, "on-call", "ml-engineer")
    admin = _token(service, client, "it-admin", "admin")
    assert client.get("/studies", headers=viewer).status_code == 200
    assert client.get("/models", headers=viewer).status_code == 200
    r = client.post("/models/ct-phantom/rollback", json={"reason": "try"}, headers=viewer)
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM and "ml-engineer" in r.json()["detail"]
    assert client.get("/audit", headers=viewer).status_code == 403
    assert client.get("/worklist", headers=viewer).status_code == 403
    assert client.get("/tokens", headers=engineer).status_code == 403
    assert client.get("/studies", headers=auditor).status_code == 403  # the audit trail only
    assert client.get("/audit", headers=auditor).status_code == 200
    assert client.get("/worklist", headers=radiologist).status_code == 200
    assert client.get("/tokens", headers=admin).status_code == 200
    # a review by a radiologist names the token as who submitted it; a refused one (422) is audited
    r = client.post("/reviews", data={"study_uid": "1.2.3", "accepted": "true"}, headers=radiologist)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = client.post("/reviews", data={"study_uid": "not a uid", "accepted": "true"}, headers=radiologist)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    # the ml-engineer may roll back; with no previous version it is refused (409), and audited as such
    r = client.post("/models/ct-phantom/rollback", json={"reason": "suspected drift"}, headers=engineer)
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    refused = events(service.data_dir, "api.refused")
    assert [(e["actor"], e["status"]) for e in refused] == [
        ("token:wall-display", 403), ("token:wall-display", 403), ("token:wall-display", 403),
        ("token:on-call", 403), ("token:compliance", 403), ("token:dr-lee", 422), ("token:on-call", 409)]
    assert refused[-1]["reason_code"] == "registry.no_previous"
    reads = events(service.data_dir, "audit.read")
    assert [r["actor"] for r in reads] == ["token:compliance"]


def test_tokens_are_stored_hashed_revocable_and_expire(api, tmp_path):
    service, client = api
    headers = _token(service, client, "short-lived", "viewer")
    secret = headers["Authorization"].split()[1]
    assert client.get("/studies", headers=headers).status_code == 200
    db = sqlite3.connect(service.data_dir / "medseg.db")
    stored = db.execute("select digest, roles from api_tokens where name = 'short-lived'").fetchone()
    assert stored[0] != secret and len(stored[0]) == 64 and stored[1] == "viewer"
    assert secret.encode() not in (service.data_dir / "medseg.db").read_bytes()
    service.tokens.revoke("short-lived", actor="test")
    assert client.get("/studies", headers=headers).status_code == 401
    expired = _token(service, client, "expired", "viewer", expires_days=0.0001)  # 8.6 s
    db.execute("update api_tokens set expires_at = ? where name = 'expired'",
               ((dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)).replace(tzinfo=None).isoformat(" "),))
    db.commit()
    assert client.get("/studies", headers=expired).status_code == 401
    # the admin's API: create (secret in the response once), list (never the secret), revoke
    admin = _token(service, client, "it-admin", "admin")
    made = client.post("/tokens", json={"name": "pacs-admin", "roles": ["viewer"]}, headers=admin)
    assert made.status_code == 201 and made.json()["token"].startswith("msk_")
    assert client.get("/studies", headers={"Authorization": f"Bearer {made.json()['token']}"}).status_code == 200
    listed = client.get("/tokens", headers=admin).json()["tokens"]
    assert {t["name"] for t in listed} == {"test-suite", "short-lived", "expired", "it-admin", "pacs-admin"}
    assert made.json()["token"] not in json.dumps(listed)
    assert client.post("/tokens", json={"name": "pacs-admin", "roles": ["viewer"]}, headers=admin).status_code == 409
    assert client.post("/tokens", json={"name": "x", "roles": ["root"]}, headers=admin).status_code == 422
    assert client.delete("/tokens/pacs-admin", headers=admin).status_code == 200
    assert client.delete("/tokens/pacs-admin", headers=admin).status_code == 404
    created = events(service.data_dir, "token.created")
    assert [e["token"] for e in created] == ["test-suite", "short-lived", "expired", "it-admin", "pacs-admin"]
    assert created[-1]["actor"] == "token:it-admin" and created[-1]["roles"] == ["viewer"]
    assert [e["actor"] for e in events(service.data_dir, "token.revoked")] == ["test", "token:it-admin"]


def test_tokens_cli_creates_lists_and_revokes_with_audit_events(tmp_path):
    env_config = tmp_path / "medseg.toml"
    env_config.write_text(f'[service]\ndata_dir = "{tmp_path / "data"}"\n')

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "medseg", "tokens", *args, "--config", str(env_config)],
                              capture_output=True, text=True)

    made = cli("create", "dr-lee", "--role", "radiologist", "--role", "viewer")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("msk_") and len(secret) > 40 and "not shown again" in made.stderr
    listed = cli("list")
    assert "dr-lee" in listed.stdout and "radiologist,viewer" in listed.stdout and secret not in listed.stdout
    bad = cli("create", "x", "--role", "root")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "[token.bad_role]" in bad.stderr
    dup = cli("create", "dr-lee", "--role", "viewer")
    assert dup.returncode == 2 and "[token.exists]" in dup.stderr
    assert cli("revoke", "dr-lee").returncode == 0
    again = cli("revoke", "dr-lee")
    assert again.returncode == 2 and "[token.not_found]" in again.stderr
    assert [e["actor"].startswith("cli:") for e in events(tmp_path / "data", "token.created")] == [True]
    assert len(events(tmp_path / "data", "token.revoked")) == 1


# ---------------------------------------------------------------- OIDC


@pytest.fixture(scope="module")
def keys():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048), \
        rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwks(tmp_path, public_key) -> str:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public_key))
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    return str(path)


def _jwt(private_key, kid="k1", **claims) -> str:
    now = dt.datetime.now(dt.timezone.utc)
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-123", "exp": now + dt.timedelta(minutes=5), "iat": now,
            "roles": ["radiology-staff", "viewer"], **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, private_key, algorithm="RS256",
                      headers={"kid": kid})


def test_oidc_jwts_are_checked_against_issuer_audience_and_keys(tmp_path, keys):
    signing, other = keys
    oidc = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": _jwks(tmp_path, signing.public_key()),
            "role_map": {"radiology-staff": "radiologist"}}
    with running(tmp_path, settings_extra={"auth": {"oidc": oidc}}) as (service, client):
        client.headers.pop("Authorization")

        def status(token, path="/worklist"):
            return client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code

        good = _jwt(signing)
        assert status(good) == 200 and status(good, "/studies") == 200  # radiologist (mapped) and viewer
        assert status(good, "/audit") == 403
        past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10)
        for bad in (_jwt(other), _jwt(signing, aud="another-app"), _jwt(signing, iss="https://evil.example"),
                    _jwt(signing, exp=past), _jwt(signing, kid="unknown"), _jwt(signing, sub=None),
                    good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
                    jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "exp": past + dt.timedelta(hours=1)},
                               "a-shared-secret-of-at-least-32-bytes!", algorithm="HS256")):
            assert status(bad) == 401, jwt.decode(bad, options={"verify_signature": False})
        assert status(_jwt(signing, roles=["cleaning-staff"])) == 403  # right issuer, no known role
        assert status(_jwt(signing, roles="viewer radiologist")) == 200  # a space-separated claim
        refused = events(service.data_dir, "api.refused")
        assert [e["status"] for e in refused] == [403, *[401] * 8, 403]
        assert refused[0]["actor"] == f"oidc:{ISSUER}#u-123"


def test_an_oidc_setting_without_a_key_source_or_with_shared_secrets_is_refused(tmp_path):
    from pydantic import ValidationError

    from medseg.config import OidcSettings

    with pytest.raises(ValidationError, match="jwks_file or jwks_url"):
        OidcSettings(issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(ValidationError, match="asymmetric"):
        OidcSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url="https://idp/jwks", algorithms=("HS256",))
    with pytest.raises(ValidationError, match="https"):
        OidcSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url="http://idp/jwks")


# ---------------------------------------------------------------- exposure and TLS


def test_serve_refuses_to_bind_beyond_loopback_without_authentication(tmp_path):
    config = tmp_path / "medseg.toml"
    config.write_text(f'[service]\ndata_dir = "{tmp_path / "data"}"\nhttp_host = "0.0.0.0"\n[auth]\nenabled = false\n')
    r = subprocess.run([sys.executable, "-m", "medseg", "serve", "--config", str(config)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "[config.unauthenticated_exposure]" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_serve_speaks_https_with_the_configured_certificate(tmp_path):
    import httpx

    from tests.node_helpers import free_port, wait_for

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    http_port, dicom_port = free_port(), free_port()
    config = tmp_path / "medseg.toml"
    config.write_text(f'[service]\ndata_dir = "{tmp_path / "data"}"\nhttp_port = {http_port}\ntls_certfile = "{cert}"\n'
                      f'tls_keyfile = "{key}"\n[node]\nport = {dicom_port}\n')
    proc = subprocess.Popen([sys.executable, "-m", "medseg", "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def up():
            try:
                return httpx.get(f"https://127.0.0.1:{http_port}/health", verify=str(cert), timeout=2)
            except httpx.HTTPError:
                return None
        assert wait_for(up, 120, what="https").json()["status"] == "ok"
        assert httpx.get(f"https://127.0.0.1:{http_port}/studies", verify=str(cert)).status_code == 401
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=5)  # no plain HTTP on the port
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert f"HTTP https://127.0.0.1:{http_port} (authentication on)" in out


def test_request_validation_errors_are_problem_details_too(api):
    service, client = api
    headers = _token(service, client, "viewer", Role.VIEWER)
    r = client.get("/studies", params={"limit": 0}, headers=headers)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM and r.json()["detail"].startswith("query.limit")
    r = client.get("/no/such/route", headers=headers)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
