"""The server's security layer: API keys stored hashed, roles, rate limits, the append-only
audit log and the ``lmforge keys`` / ``lmforge audit`` verbs, on real SQLite files."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import stat
import threading
import time

import pytest
from fakes import assert_user_error, run_cli

from lmforge.errors import LmforgeError
from lmforge.serve.audit import COLUMNS, AuditLog, format_time, parse_since
from lmforge.serve.keys import KeyRecord, KeyStore, allowed, default_db_path
from lmforge.serve.ratelimit import PRUNE_EVERY_S, RateLimiter, TokenBucket


@pytest.fixture
def db(tmp_path):
    return tmp_path / "serve.db"


def _raw_bytes(db) -> bytes:
    """The database file and its WAL/shared-memory companions, as stored on disk."""
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# ----------------------------------------------------------------------------- keys

def test_create_verify_list_revoke_round_trip(db):
    store = KeyStore(db)
    rec, secret = store.create("user", "frontend", requests_per_minute=60)
    assert secret.startswith("lmf-") and len(secret) == 4 + 43
    assert rec.id.startswith("key_") and len(rec.id) == 16
    assert rec.prefix == secret[4:12] and rec.revoked is None
    assert (rec.role, rec.name, rec.requests_per_minute, rec.tokens_per_minute) == (
        "user", "frontend", 60, None)
    assert KeyStore(db).verify(secret) == rec  # a second store over the same file
    other, _ = store.create("reader", "dashboard")
    assert store.list() == [rec, other] and store.count_active() == 2

    revoked = store.revoke("frontend")
    assert revoked.id == rec.id and revoked.revoked >= rec.created
    assert store.verify(secret) is None
    assert store.list() == [other] and store.count_active() == 1
    assert store.list(include_revoked=True) == [revoked, other]
    assert store.revoke(other.id).revoked is not None  # by id too


def test_secret_is_stored_only_as_its_sha256(db):
    store = KeyStore(db)
    _, secret = store.create("admin", "root")
    raw = _raw_bytes(db)
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in raw  # the data is there
    assert secret.encode() not in raw and secret[4:].encode() not in raw
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_verify_rejects_wrong_malformed_and_revoked_keys(db):
    store = KeyStore(db)
    _, secret = store.create("user", "a")
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert store.verify(flipped) is None
    assert store.verify(secret[4:]) is None  # without the lmf- prefix
    assert store.verify("lmf-" + "x" * 1000) is None
    assert store.verify("") is None
    store.revoke("a")
    assert store.verify(secret) is None


def test_names_roles_and_limits_are_checked(db):
    store = KeyStore(db)
    store.create("user", "bob")
    with pytest.raises(LmforgeError, match="active key named 'bob' exists"):
        store.create("admin", " bob ")
    with pytest.raises(LmforgeError, match=r"unknown role 'root'; roles: admin, user, reader"):
        store.create("root", "carol")
    with pytest.raises(LmforgeError, match="needs a name"):
        store.create("user", "  ")
    with pytest.raises(LmforgeError, match="printable"):
        store.create("user", "evil\nname")
    for bad in (0, -5, 1.5, True, 10**30):  # 10**30: past SQLite's integers
        with pytest.raises(LmforgeError, match="an integer from 1 to"):
            store.create("user", "dave", tokens_per_minute=bad)
    assert [r.name for r in store.list()] == ["bob"]  # nothing half-created
    store.revoke("bob")
    assert store.create("user", "bob")[0].name == "bob"  # a revoked key frees its name


def test_revoke_errors(db):
    store = KeyStore(db)
    with pytest.raises(LmforgeError, match="no key with id or name 'ghost'"):
        store.revoke("ghost")
    rec, _ = store.create("user", "once")
    store.revoke(rec.id)
    with pytest.raises(LmforgeError, match=f"{rec.id} \\(once\\) is already revoked"):
        store.revoke("once")


def test_concurrent_creates_from_threads(db):
    store = KeyStore(db)
    secrets_ = []
    threads = [threading.Thread(target=lambda i=i: secrets_.append(
        store.create("user", f"t{i}")[1])) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count_active() == 8
    assert {store.verify(s).name for s in secrets_} == {f"t{i}" for i in range(8)}


def test_a_file_that_is_not_a_database_is_a_user_error(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_text("not sqlite at all, just some text that is long enough " * 20)
    with pytest.raises(LmforgeError, match="is not an lmforge database"):
        KeyStore(bad)


def test_default_db_path(monkeypatch, tmp_path):
    monkeypatch.setenv("LMFORGE_DB", str(tmp_path / "env.db"))
    assert default_db_path() == tmp_path / "env.db"
    monkeypatch.delenv("LMFORGE_DB")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = default_db_path()
    assert path == tmp_path / "home" / ".lmforge" / "serve.db"
    KeyStore(path)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("role,scopes", [
    ("admin", {"inference", "models", "metrics", "admin"}),
    ("user", {"inference", "models"}),
    ("reader", {"models", "metrics"}),
    ("nobody", set()),
])
def test_allowed_matrix(role, scopes):
    for scope in ("inference", "models", "metrics", "admin"):
        assert allowed(role, scope) is (scope in scopes), (role, scope)


def test_allowed_rejects_an_unknown_scope():
    with pytest.raises(ValueError, match="unknown scope 'delete'"):
        allowed("admin", "delete")


# ----------------------------------------------------------------------------- rate limits

def _key(rpm: int | None = None, tpm: int | None = None, key_id: str = "key_1") -> KeyRecord:
    return KeyRecord(id=key_id, name=key_id, role="user", prefix="abcdefgh", created=0.0,
                     revoked=None, requests_per_minute=rpm, tokens_per_minute=tpm)


def test_token_bucket_refill_math_and_retry_after():
    clock = FakeClock()
    bucket = TokenBucket(60, capacity=2, clock=clock)  # r = 1 token/s, C = 2
    assert bucket.try_take() == 0.0 and bucket.try_take() == 0.0
    assert bucket.try_take() == 1.0  # empty: (1 - 0) / 1
    assert bucket.try_take(2) == 2.0
    clock.t += 0.25
    assert bucket.try_take() == 0.75
    clock.t += 0.75
    assert bucket.try_take() == 0.0 and bucket.level == 0.0
    clock.t += 100  # refill stops at the capacity
    assert bucket.try_take(2) == 0.0
    assert bucket.try_take() == 1.0
    with pytest.raises(ValueError, match="never be taken"):
        bucket.try_take(3)


def test_token_bucket_default_capacity_is_one_minute():
    clock = FakeClock()
    bucket = TokenBucket(30, clock=clock)  # r = 0.5/s, C = 30
    assert all(bucket.try_take() == 0.0 for _ in range(30))
    assert bucket.try_take() == 2.0
    bucket.charge(3)  # a debt: level -3
    assert bucket.wait_time(1) == 8.0


def test_rate_limiter_requests_per_minute():
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    key = _key(rpm=15)  # r = 0.25/s, C = 15
    assert all(limiter.check_request(key) == 0.0 for _ in range(15))
    assert limiter.check_request(key) == 4.0
    assert limiter.check_request(_key(rpm=15, key_id="key_2")) == 0.0  # buckets are per key
    clock.t += 4
    assert limiter.check_request(key) == 0.0
    assert limiter.check_request(_key()) == 0.0  # no limits at all


def test_rate_limiter_token_budget_blocks_until_positive():
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    key = _key(rpm=100, tpm=600)  # 10 tokens/s
    assert limiter.check_request(key) == 0.0
    limiter.charge_tokens(key, 649)  # level 600 - 649 = -49
    assert limiter.check_request(key) == 5.0  # until the level is 1 again
    clock.t += 4.5
    assert limiter.check_request(key) == 0.5
    clock.t += 0.5
    assert limiter.check_request(key) == 0.0
    limiter.charge_tokens(_key(rpm=1), 10**6)  # a key without a token limit: no effect
    assert limiter.check_request(_key(rpm=1)) == 0.0
    with pytest.raises(ValueError, match="negative"):
        limiter.charge_tokens(key, -1)


def test_rate_limiter_blocked_by_tokens_takes_no_request():
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    key = _key(rpm=1, tpm=60)
    limiter.charge_tokens(key, 61)  # level -1: 2 s to reach 1
    assert limiter.check_request(key) == 2.0
    clock.t += 2
    assert limiter.check_request(key) == 0.0  # the refused call did not spend the request


def test_rate_limiter_drops_buckets_that_refilled():
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    idle, busy = _key(rpm=60, tpm=600, key_id="idle"), _key(tpm=60, key_id="busy")
    limiter.check_request(idle)
    limiter.charge_tokens(busy, 200)  # r = 1/s: full again 200 s from now
    assert len(limiter) == 3
    clock.t += PRUNE_EVERY_S - 1
    limiter.check_request(_key())  # idle's buckets are full, but it is not time to prune
    assert len(limiter) == 3
    clock.t += 1
    limiter.check_request(_key())  # idle's buckets go; busy's (level -80) stays
    assert len(limiter) == 1
    clock.t += 200 - PRUNE_EVERY_S
    limiter.check_request(_key())
    assert len(limiter) == 0


# ----------------------------------------------------------------------------- audit

def test_audit_is_append_only_in_the_database(db):
    log = AuditLog(db)
    log.record(route="/v1/models", method="GET", status=200)
    with sqlite3.connect(db) as conn:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit SET status = 500")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit")
    assert [r["status"] for r in log.tail()] == [200]


def test_audit_tail_since_and_unknown_fields(db):
    log = AuditLog(db)
    for i in range(5):
        log.record(time=100.0 + i, request_id=f"r{i}", key_id="key_1", role="user",
                   route="/v1/chat/completions", method="POST", model="gpt",
                   model_version="3", status=200, latency_s=0.5, prompt_tokens=i,
                   completion_tokens=2 * i)
    log.record(time=99.0, request_id="late")  # recorded late, older time
    assert [r["request_id"] for r in log.tail(3)] == ["r2", "r3", "r4"]
    assert [r["request_id"] for r in log.tail()] == ["late", "r0", "r1", "r2", "r3", "r4"]
    assert log.tail(0) == []
    assert [r["request_id"] for r in log.since(103.0)] == ["r3", "r4"]
    row = log.since(104.0)[0]
    assert list(row) == list(COLUMNS)
    assert row["completion_tokens"] == 8 and row["latency_s"] == 0.5
    with pytest.raises(TypeError, match="unknown audit field.*api_key"):
        log.record(api_key="lmf-x")


def test_audit_redacts_secrets(db):
    store, log = KeyStore(db), AuditLog(db)
    _, secret = store.create("user", "leaky")
    log.record(route=f"/v1/models?api_key={secret}", detail=f"Bearer {secret}")
    row = log.tail(1)[0]
    assert row["detail"] == "Bearer lmf-[redacted]"
    assert row["route"] == "/v1/models?api_key=lmf-[redacted]"
    assert secret[4:].encode() not in _raw_bytes(db)


def test_audit_export_jsonl_and_csv(db):
    log = AuditLog(db)
    log.record(time=10.0, route="/old", status=200)
    log.record(time=20.0, route="/v1/completions", status=429, detail="a, \"quoted\" 你好")
    log.record(time=30.0, route="/v1/models", status=200, prompt_tokens=3)
    out = io.StringIO()
    assert log.export(15.0, "jsonl", out) == 2
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["route"] for r in rows] == ["/v1/completions", "/v1/models"]
    assert rows[0]["detail"] == "a, \"quoted\" 你好" and rows[1]["prompt_tokens"] == 3

    out = io.StringIO()
    assert log.export(None, "csv", out) == 3
    table = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(table[0]) == list(COLUMNS)
    assert [(r["time"], r["status"]) for r in table] == [("10.0", "200"), ("20.0", "429"),
                                                         ("30.0", "200")]
    assert table[1]["detail"] == "a, \"quoted\" 你好" and table[0]["model"] == ""
    with pytest.raises(LmforgeError, match="unknown export format 'xml'"):
        log.export(None, "xml", io.StringIO())


@pytest.mark.parametrize("text,expected", [
    ("2026-12-05", 1796428800.0),
    ("2026-12-05T10:00:00", 1796464800.0),
    ("2026-12-05T10:00:00Z", 1796464800.0),
    ("2026-12-05T10:00:00+02:00", 1796457600.0),
    ("15m", 1_000_000.0 - 900),
    ("2h", 1_000_000.0 - 7200),
    ("7d", 1_000_000.0 - 7 * 86400),
    (" 30s ", 1_000_000.0 - 30),
])
def test_parse_since_forms(text, expected):
    assert parse_since(text, now=1_000_000.0) == expected


@pytest.mark.parametrize("text", ["yesterday", "", "15", "-2h", "2 days", "2026-13-01"])
def test_parse_since_errors(text):
    with pytest.raises(LmforgeError, match="give an ISO-8601 date or time") as e:
        parse_since(text)
    assert "\n" not in str(e.value)


def test_naive_times_are_utc_whatever_the_local_zone(monkeypatch):
    monkeypatch.setenv("TZ", "UTC-09")  # POSIX spelling of UTC+9
    time.tzset()
    try:
        assert time.localtime(0).tm_hour == 9
        assert parse_since("2026-12-05T10:00:00") == 1796464800.0
        assert format_time(1796464800.0) == "2026-12-05T10:00:00Z"
    finally:
        monkeypatch.undo()
        time.tzset()


# ----------------------------------------------------------------------------- CLI

def test_cli_keys_create_list_revoke(db, capsys):
    code, out, err = run_cli(["keys", "create", "--role", "user", "--name", "web", "--rpm",
                              "60", "--db", str(db)], capsys)
    assert code == 0
    secret = out.strip()
    assert out == secret + "\n" and secret.startswith("lmf-")
    assert "will not be shown again" in err and secret not in err
    rec = KeyStore(db).verify(secret)
    assert rec is not None and rec.requests_per_minute == 60

    code, out, _ = run_cli(["keys", "list", "--db", str(db)], capsys)
    assert code == 0
    header, line = out.splitlines()
    assert header.split() == ["ID", "NAME", "ROLE", "PREFIX", "CREATED", "REVOKED", "RPM",
                              "TPM"]
    assert line.split()[:4] == [rec.id, "web", "user", secret[:12]]
    assert secret not in out and secret[12:] not in out

    code, out, _ = run_cli(["keys", "revoke", "web", "--db", str(db)], capsys)
    assert (code, out) == (0, f"revoked {rec.id} (web)\n")
    code, out, _ = run_cli(["keys", "list", "--all", "--json", "--db", str(db)], capsys)
    [listed] = json.loads(out)
    assert listed["id"] == rec.id and listed["revoked"] is not None
    assert set(listed) == {"id", "name", "role", "prefix", "created", "revoked",
                           "requests_per_minute", "tokens_per_minute"}
    assert secret[4:].encode() not in _raw_bytes(db)

    details = [r["detail"] for r in AuditLog(db).tail()]
    assert details == [f"created {rec.id} (web, role user)", f"revoked {rec.id} (web)"]


def test_cli_uses_lmforge_db_env(db, capsys, monkeypatch):
    monkeypatch.setenv("LMFORGE_DB", str(db))
    code, out, _ = run_cli(["keys", "create", "--role", "reader", "--name", "grafana"], capsys)
    assert code == 0 and KeyStore(db).verify(out.strip()).role == "reader"


@pytest.mark.parametrize("args,fragment", [
    (["keys", "create", "--role", "root", "--name", "x"], "unknown role 'root'"),
    (["keys", "create", "--role", "user", "--name", "x", "--tpm", "0"], "an integer from 1 to"),
    (["keys", "revoke", "nobody"], "no key with id or name 'nobody'"),
    (["audit", "export", "--since", "last week"], "cannot read the time 'last week'"),
    (["audit", "export", "--since", "1h", "--format", "xml"], "unknown export format"),
])
def test_cli_user_errors(db, capsys, args, fragment):
    KeyStore(db)
    assert_user_error([*args, "--db", str(db)], capsys, fragment)


def test_cli_read_verbs_need_an_existing_database(tmp_path, capsys):
    missing = tmp_path / "typo.db"
    for verb in (["keys", "list"], ["audit", "tail"]):
        assert_user_error([*verb, "--db", str(missing)], capsys, "no key database at")
    assert not missing.exists()


def test_cli_audit_tail_and_export(db, tmp_path, capsys):
    log = AuditLog(db)
    log.record(time=parse_since("2026-12-05T10:00:00"), key_id="key_1", role="user",
               route="/v1/completions", method="POST", status=200, latency_s=0.25,
               prompt_tokens=5, completion_tokens=7, model="gpt", model_version="2")
    log.record(time=parse_since("2026-12-06"), route="/v1/models", method="GET", status=401)

    code, out, _ = run_cli(["audit", "tail", "-n", "1", "--db", str(db)], capsys)
    assert code == 0
    assert out.splitlines()[1].split()[:4] == ["2026-12-06T00:00:00Z", "401", "GET",
                                               "/v1/models"]
    code, out, _ = run_cli(["audit", "tail", "--json", "--db", str(db)], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["status"] for r in rows] == [200, 401]

    code, out, _ = run_cli(["audit", "export", "--since", "2026-12-05T12:00Z", "--db",
                            str(db)], capsys)
    assert code == 0 and [json.loads(x)["status"] for x in out.splitlines()] == [401]

    dest = tmp_path / "audit.csv"
    code, out, _ = run_cli(["audit", "export", "--since", "2026-12-01", "--format", "csv",
                            "--out", str(dest), "--db", str(db)], capsys)
    assert (code, out) == (0, f"wrote {dest} (2 rows)\n")
    table = list(csv.DictReader(dest.open(encoding="utf-8", newline="")))
    assert [r["route"] for r in table] == ["/v1/completions", "/v1/models"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp

    dest.write_text("keep me")
    assert_user_error(["audit", "export", "--since", "1d", "--format", "xml", "--out",
                       str(dest), "--db", str(db)], capsys, "unknown export format")
    assert dest.read_text() == "keep me"


def test_limiters_sharing_a_database_share_the_budget(tmp_path):
    """Two limiters on one SQLite file (two workers of ``--workers 2``) hold one bucket."""
    clock = FakeClock()
    db = tmp_path / "serve.db"
    a, b = RateLimiter(clock=clock, db=db), RateLimiter(clock=clock, db=db)
    key = _key(rpm=3, tpm=60)
    assert [a.check_request(key), b.check_request(key), a.check_request(key)] == [0.0] * 3
    assert b.check_request(key) == 20.0  # r = 3/min: 20 s for the next request
    clock.t += 20
    b.charge_tokens(key, 70)  # the token budget (60) is now 10 in debt on both
    assert a.check_request(key) == 11.0  # (1 - (-10)) / 1 per s
    assert len(a) == len(b) == 2
    assert a.check_request(_key()) == 0.0  # unlimited keys touch nothing


def _take(db: str, n: int, out) -> None:
    limiter = RateLimiter(db=db)
    key = _key(rpm=3)  # a burst of 3, then one request per 20 s
    out.put(sum(limiter.check_request(key) == 0.0 for _ in range(n)))


def test_shared_limiter_admits_the_budget_once_across_processes(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    db, out = str(tmp_path / "serve.db"), ctx.Queue()
    RateLimiter(db=db)  # the table exists before both start
    procs = [ctx.Process(target=_take, args=(db, 30, out)) for _ in range(2)]
    for p in procs:
        p.start()
    admitted = out.get(timeout=120) + out.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
    # the burst of 3 once (two separate budgets would admit 6), plus one more should the
    # processes take over 20 s on a slow machine
    assert 3 <= admitted <= 4
