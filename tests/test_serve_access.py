"""API keys, roles, rate limits, the audit log and TLS on a real server: the keys live in
a real SQLite file, the official openai client gets its own exception types, and the
audit table records every authenticated request without the key."""

from __future__ import annotations

import datetime
import ipaddress
import ssl

import httpx
import openai
import pytest
from serve_fixtures import make_model_folder, running

from lmforge.cli import main
from lmforge.serve.app import ServerOptions, build_app
from lmforge.serve.audit import AuditLog
from lmforge.serve.keys import KeyStore
from lmforge.serve.models import ModelSpec


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("access") / "tiny")


@pytest.fixture(scope="module")
def keyed(folder, tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "serve.db"
    store = KeyStore(db)
    secrets = {name: store.create(role, name, rpm, tpm)[1] for name, role, rpm, tpm in [
        ("root", "admin", None, None), ("app", "user", None, None),
        ("dash", "reader", None, None), ("slow", "user", 2, None),
        ("thrifty", "user", None, 30)]}
    app = build_app([ModelSpec("tiny", str(folder))], ServerOptions(db=db))
    with running(app) as url:
        yield url, db, secrets


def _client(url, key):
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def test_keys_and_roles(keyed):
    url, _, keys = keyed
    with pytest.raises(openai.AuthenticationError) as e:
        _client(url, "lmf-wrong").models.list()
    assert e.value.body["type"] == "authentication_error"
    assert httpx.get(url + "/v1/models").status_code == 401
    assert httpx.get(url + "/health").status_code == 200  # public
    assert httpx.get(url + "/ready").status_code == 200
    user = _client(url, keys["app"])
    assert user.completions.create(model="tiny", prompt="Alice", max_tokens=3).choices
    reader = _client(url, keys["dash"])
    assert [m.id for m in reader.models.list().data] == ["tiny"]
    with pytest.raises(openai.PermissionDeniedError):
        reader.completions.create(model="tiny", prompt="Alice", max_tokens=3)
    auth = {"Authorization": f"Bearer {keys['dash']}"}
    assert httpx.get(url + "/metrics", headers=auth).status_code == 200
    auth = {"Authorization": f"Bearer {keys['app']}"}
    assert httpx.get(url + "/metrics", headers=auth).status_code == 403
    assert httpx.get(url + "/admin/keys", headers=auth).status_code == 403


def test_request_rate_limit_is_429_with_retry_after(keyed):
    url, _, keys = keyed
    slow = _client(url, keys["slow"])
    for _ in range(2):
        slow.completions.create(model="tiny", prompt="Alice", max_tokens=2)
    with pytest.raises(openai.RateLimitError) as e:
        slow.completions.create(model="tiny", prompt="Alice", max_tokens=2)
    assert 1 <= int(e.value.response.headers["Retry-After"]) <= 30


def test_token_budget_is_charged_after_the_request(keyed):
    url, _, keys = keyed
    thrifty = _client(url, keys["thrifty"])
    r = thrifty.completions.create(model="tiny", prompt="Alice lives in Paris",
                                   max_tokens=30, extra_body={"ignore_eos": True})
    assert r.usage.total_tokens > 30
    with pytest.raises(openai.RateLimitError):
        thrifty.completions.create(model="tiny", prompt="Alice", max_tokens=2)


def test_audit_records_requests_without_secrets(keyed):
    url, db, keys = keyed
    rid = "test-audit-42"
    r = httpx.post(url + "/v1/completions", headers={
        "Authorization": f"Bearer {keys['app']}", "X-Request-Id": rid},
        json={"model": "tiny", "prompt": "Alice", "max_tokens": 3})
    assert r.status_code == 200 and r.headers["x-request-id"] == rid
    rows = [row for row in AuditLog(db).tail(200) if row["request_id"] == rid]
    assert len(rows) == 1
    row = rows[0]
    app_key = next(k for k in KeyStore(db).list() if k.name == "app")
    assert (row["key_id"], row["role"], row["route"], row["status"]) == \
        (app_key.id, "user", "/v1/completions", 200)
    assert row["model"] == "tiny" and row["prompt_tokens"] > 0
    assert row["completion_tokens"] == r.json()["usage"]["completion_tokens"]
    raw = b"".join(f.read_bytes() for f in db.parent.glob(db.name + "*"))  # + WAL
    assert not any(secret.encode() in raw for secret in keys.values())


def test_admin_creates_and_revokes_keys(keyed):
    url, _, keys = keyed
    admin = {"Authorization": f"Bearer {keys['root']}"}
    made = httpx.post(url + "/admin/keys", headers=admin,
                      json={"role": "user", "name": "temp"}).json()
    new = _client(url, made["secret"])
    assert new.models.list().data
    listed = httpx.get(url + "/admin/keys", headers=admin).json()["data"]
    assert "temp" in {k["name"] for k in listed} and all("secret" not in k for k in listed)
    assert httpx.delete(url + "/admin/keys/temp", headers=admin).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        new.models.list()
    assert httpx.delete(url + "/admin/keys/temp", headers=admin).status_code == 400
    rows = httpx.get(url + "/admin/audit", headers=admin, params={"since": "1h"}).json()
    details = [r["detail"] for r in rows["data"] if r["detail"]]
    assert any(d.startswith("created") for d in details)
    assert any(d.startswith("revoked") for d in details)


def test_serve_refuses_a_public_host_without_keys(tmp_path, folder, capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", str(folder), "--host", "0.0.0.0", "--db", str(tmp_path / "none.db")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--insecure" in err and "0.0.0.0" in err


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_tls_with_a_self_signed_certificate(tmp_path, folder):
    cert, key = _self_signed(tmp_path)
    app = build_app([ModelSpec("tiny", str(folder))])
    with running(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as url:
        assert url.startswith("https://")
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as c:
            r = c.post(url + "/v1/completions", json={"model": "tiny", "prompt": "Alice",
                                                      "max_tokens": 3})
            assert r.status_code == 200
        with pytest.raises(httpx.ConnectError):  # an unknown certificate is refused
            httpx.get(url + "/health")
