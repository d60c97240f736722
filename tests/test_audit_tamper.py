"""The twenty attacks of issue 16 on copies of a data dir (SQLite + anchors file), plus a replay
of a saved sealed head, none holding the chain key: `medseg audit verify` must catch every one.
Then what the key's holder can still do, and the syslog anchors that show even that."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from audit.chain import GENESIS, link
from audit.store import FIELDS
from audit.verify import anchor_seal, read_anchors, verify
from medseg.app.auditing import auditor_for
from medseg.app.context import build_context
from medseg.app.crosscheck import crosscheck
from medseg.config import AuditSettings, ServiceSettings, Settings
from medseg.db import make_engine, session
from medseg.quality.orm import Review
from medseg.quality.states import ReviewStatus

ANCHOR_EVERY = 10


def _settings(data: Path, **audit) -> Settings:
    return Settings(service=ServiceSettings(data_dir=data), audit=AuditSettings(anchor_every=ANCHOR_EVERY, **audit))


def _build(data: Path, running_copy: Path) -> None:
    """A trail as a service leaves it: bootstrap, a promotion, jobs, scored reviews, anchors
    (start, every 10 events, stop); ``running_copy`` is taken before the stop anchor."""
    ctx = build_context(_settings(data)).prepare()
    ctx.registry.switch("ct-phantom", "1.1.0", action="promote", actor="token:on-call", reason="validated")
    for i in range(30):
        ctx.auditor("job.queued", job_id=i, study_uid=f"1.2.{i}", model="ct-phantom/1.1.0", instances=60 + i)
    for i in range(3):  # as the review intake writes them: the row and its event in one transaction
        with session(ctx.engine) as s, s.begin():
            row = Review(status=ReviewStatus.SCORED, job_id=i, study_uid=f"1.2.{i}", model="ct-phantom/1.1.0",
                         door="api", submitted_by="token:dr-lee", dice=0.8 + i / 100, fn_rate=0.1)
            s.add(row)
            s.flush()
            ctx.auditor("review.scored", connection=s.connection(), actor="token:dr-lee", review_id=row.id,
                        dice=round(row.dice, 4), fn_rate=0.1, model="ct-phantom/1.1.0", study_uid=row.study_uid)
    ctx.auditor("job.queued", job_id=99, study_uid="1.2.99", model="ct-phantom/1.1.0")
    shutil.copytree(data, running_copy)
    ctx.auditor("job.queued", job_id=100, study_uid="1.2.100", model="ct-phantom/1.1.0")
    ctx.auditor.anchor()  # the service's stop anchor
    # what an insider could have saved from an earlier backup: the head row as it was (sealed)
    old = sqlite3.connect(running_copy / "medseg.db").execute("SELECT seq, hash, keyed_from, mac FROM audit_head").fetchone()
    (data.parent / "replay-head.json").write_text(json.dumps(old))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("trail")
    _build(root / "stopped", root / "running")
    return root


def check(data: Path):
    """What `medseg audit verify` does, in-process: chain, seals, anchors, then the tables."""
    settings = _settings(data)
    auditor = auditor_for(settings, make_engine(settings.service.db_url()), create_keys=False)
    result = verify(auditor.log, read_anchors(auditor.anchors_file), anchor_every=ANCHOR_EVERY)
    return crosscheck(build_context(settings, create_keys=False), result) if result.ok else result


def _db(data: Path) -> sqlite3.Connection:
    return sqlite3.connect(data / "medseg.db", isolation_level=None)


def _rows(db) -> list[dict]:
    db.row_factory = sqlite3.Row
    return [dict(r) for r in db.execute("SELECT * FROM audit_events ORDER BY seq")]


def _fields(row: dict) -> dict:
    fields = {k: row[k] for k in FIELDS if k != "details"}
    fields["details"] = json.loads(row["details"])
    return fields


def _rechain(db, rows: list[dict]) -> None:
    """Rewrite the whole table as a consistent chain of ``rows`` (renumbered), head included:
    what an attacker with write access but no key can do."""
    db.execute("DELETE FROM audit_events")
    prev = GENESIS
    for seq, row in enumerate(rows, start=1):
        row = {**row, "seq": seq, "prev_hash": prev}
        row["hash"] = prev = link(prev, seq, row["ts"], _fields(row))
        db.execute(f"INSERT INTO audit_events ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    db.execute("UPDATE audit_head SET seq = ?, hash = ?", (len(rows), prev))


def _rewrite_anchors(data: Path, db) -> None:
    """Anchors matching the rewritten chain, sealed with a guessed key (the attacker has none)."""
    seq, digest = db.execute("SELECT seq, hash FROM audit_head").fetchone()
    (data / "audit-anchors.jsonl").write_text(
        json.dumps({"seq": seq, "hash": digest, "ts": "2026-12-01T00:00:00.000000Z",
                    "mac": anchor_seal(b"x" * 32, seq, digest, "2026-12-01T00:00:00.000000Z", "")}) + "\n")


def _edit(rows, seq, **changes):
    return [{**r, **changes} if r["seq"] == seq else r for r in rows]


def a01_edit_field(d, db): db.execute("UPDATE audit_events SET actor = 'someone' WHERE seq = 5")
def a02_edit_detail(d, db): db.execute("""UPDATE audit_events SET details = '{"instances": 1}' WHERE seq = 9""")
def a03_redate(d, db): db.execute("UPDATE audit_events SET ts = '2020-01-01T00:00:00.000000Z' WHERE seq = 7")
def a04_delete_row(d, db): db.execute("DELETE FROM audit_events WHERE seq = 8")


def a05_delete_and_renumber(d, db):
    db.execute("DELETE FROM audit_events WHERE seq = 8")
    db.execute("UPDATE audit_events SET seq = seq - 1 WHERE seq > 8")
    db.execute("UPDATE audit_head SET seq = seq - 1")


def a06_insert_row(d, db):
    rows = _rows(db)
    fake = {**rows[9], "actor": "intruder"}
    db.execute("UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 10")
    db.execute("UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1000")
    fake.update(seq=10, prev_hash=rows[8]["hash"], hash=link(rows[8]["hash"], 10, fake["ts"], _fields(fake)))
    db.execute(f"INSERT INTO audit_events ({', '.join(fake)}) VALUES ({', '.join('?' * len(fake))})", list(fake.values()))
    db.execute("UPDATE audit_head SET seq = seq + 1")


def a07_swap_rows(d, db):
    rows = {r["seq"]: r for r in _rows(db)}
    for a, b in ((11, 12), (12, 11)):
        r = rows[b]
        db.execute("UPDATE audit_events SET actor = ?, details = ?, job_id = ?, study_uid = ? WHERE seq = ?",
                   (r["actor"], r["details"], r["job_id"], r["study_uid"], a))


def a08_truncate_tail(d, db): db.execute("DELETE FROM audit_events WHERE seq > (SELECT max(seq) - 3 FROM audit_events)")


def a09_truncate_and_rewrite_head(d, db):
    a08_truncate_tail(d, db)
    db.execute("UPDATE audit_head SET seq = (SELECT max(seq) FROM audit_events), "
               "hash = (SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1)")


def a10_edit_head_only(d, db): db.execute("UPDATE audit_head SET hash = ?", ("f" * 64,))
def a11_edit_and_rechain(d, db): _rechain(db, _edit(_rows(db), 5, actor="someone"))
def a12_delete_and_rechain(d, db): _rechain(db, [r for r in _rows(db) if r["seq"] != 5])


def a13_truncate_head_and_anchors(d, db):
    _rechain(db, _rows(db)[:-3])
    _rewrite_anchors(d, db)


def a14_truncate_head_delete_anchors(d, db):
    _rechain(db, _rows(db)[:-3])
    (d / "audit-anchors.jsonl").unlink()


def a15_delete_everything(d, db):
    db.execute("DELETE FROM audit_events")
    db.execute("UPDATE audit_head SET seq = 0, hash = ?", (GENESIS,))
    (d / "audit-anchors.jsonl").unlink()


def a16_edit_rechain_and_anchors(d, db):
    _rechain(db, _edit(_rows(db), 5, actor="someone"))
    _rewrite_anchors(d, db)


def a17_forge_append(d, db):
    rows = _rows(db)
    forged = {**rows[-1], "seq": rows[-1]["seq"] + 1, "action": "model.promoted", "actor": "token:on-call",
              "prev_hash": rows[-1]["hash"], "mac": None}
    forged["hash"] = link(forged["prev_hash"], forged["seq"], forged["ts"], _fields(forged))
    db.execute(f"INSERT INTO audit_events ({', '.join(forged)}) VALUES ({', '.join('?' * len(forged))})",
               list(forged.values()))
    db.execute("UPDATE audit_head SET seq = ?, hash = ?", (forged["seq"], forged["hash"]))


def a18_rewrite_after_start_anchor_on_running_copy(d, db):  # d is the copy taken while serving
    start = read_anchors(d / "audit-anchors.jsonl")[0].seq
    _rechain(db, [r if r["seq"] <= start else {**r, "actor": "someone"} for r in _rows(db)])


def a19_edit_registry_history(d, db):
    db.execute("UPDATE model_registry_history SET actor = 'token:forged' WHERE action = 'promote'")


def a20_edit_review(d, db): db.execute("UPDATE reviews SET dice = 0.99 WHERE id = 1")


def a21_truncate_to_a_saved_sealed_head(d, db):
    """The tail cut back to a state whose sealed head row the attacker saved earlier: the head
    seal holds, the anchors written since do not."""
    seq, digest, keyed_from, mac = json.loads((d.parent.parent / "replay-head.json").read_text())
    db.execute("DELETE FROM audit_events WHERE seq > ?", (seq,))
    db.execute("UPDATE audit_head SET seq = ?, hash = ?, keyed_from = ?, mac = ?", (seq, digest, keyed_from, mac))


ATTACKS = [v for k, v in sorted(globals().items()) if k.startswith("a") and k[1:3].isdigit()]


def test_the_untouched_trail_verifies_stopped_and_running(pristine):
    for name in ("stopped", "running"):
        result = check(pristine / name)
        assert result.ok, (name, result.problem)
        assert result.anchors_checked >= 3 and result.events == (37 if name == "stopped" else 36)


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda f: f.__name__)
def test_every_attack_without_the_key_is_detected(attack, pristine, tmp_path):
    shutil.copy(pristine / "replay-head.json", tmp_path / "replay-head.json")
    data = tmp_path / "copy" / "data"
    shutil.copytree(pristine / ("running" if "running" in attack.__name__ else "stopped"), data)
    db = _db(data)
    attack(data, db)
    db.close()
    result = check(data)
    assert not result.ok, f"{attack.__name__} went unnoticed"
    assert result.problem


def test_verify_cli_exits_1_on_tampering_and_0_on_the_intact_trail(pristine, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(pristine / "stopped", data)
    config = tmp_path / "medseg.toml"
    config.write_text(f'[service]\ndata_dir = "{data}"\n[audit]\nanchor_every = {ANCHOR_EVERY}\n')

    def cli():
        return subprocess.run([sys.executable, "-m", "medseg", "audit", "verify", "--config", str(config)],
                              capture_output=True, text=True)

    ok = cli()
    assert ok.returncode == 0 and "audit chain intact: 37 events" in ok.stdout, ok.stderr
    db = _db(data)
    a19_edit_registry_history(data, db)
    db.close()
    broken = cli()
    assert broken.returncode == 1 and "model_registry_history disagrees" in broken.stderr
    (data / "audit-chain.key").unlink()  # without its key a keyed trail is not vouched for
    assert "no key was given" in cli().stderr


def test_what_the_key_holder_can_do_and_what_syslog_still_shows(tmp_path):
    """With the key, the database and the local anchors file can be rewritten consistently (the
    README says so); the anchors a syslog host received cannot, and they disagree."""
    from audit.chain import seal

    received: list[str] = []
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(5)
    address = f"127.0.0.1:{sink.getsockname()[1]}"
    data = tmp_path / "data"
    ctx = build_context(_settings(data, syslog_address=address)).prepare()
    for i in range(12):
        ctx.auditor("job.queued", job_id=i, model="ct-phantom/1.1.0")
    ctx.auditor.anchor()
    while True:
        try:
            received.append(sink.recv(4096).decode())
        except TimeoutError:
            break
        if received and json.loads(received[-1].split("anchor ", 1)[1].rstrip("\x00"))["seq"] == 13:
            break
    sink.close()
    assert len(received) >= 2 and all("medseg audit anchor" in m for m in received)

    key = (data / "audit-chain.key").read_bytes()
    db = _db(data)
    rows = _edit(_rows(db), 5, actor="someone")
    _rechain(db, rows)
    keyed_from = db.execute("SELECT keyed_from FROM audit_head").fetchone()[0]
    for r in _rows(db):
        db.execute("UPDATE audit_events SET mac = ? WHERE seq = ?", (seal(key, "event", r["seq"], r["hash"]), r["seq"]))
    seq, digest = db.execute("SELECT seq, hash FROM audit_head").fetchone()
    from audit.store import head_seal
    db.execute("UPDATE audit_head SET mac = ?", (head_seal(key, seq, digest, keyed_from),))
    db.close()
    ts = "2026-12-01T00:00:00.000000Z"
    (data / "audit-anchors.jsonl").write_text(json.dumps({"seq": seq, "hash": digest, "ts": ts,
                                                          "mac": anchor_seal(key, seq, digest, ts, "")}) + "\n")
    assert check(data).ok, "the key holder's rewrite passes locally: the documented limit"
    remote = read_anchors_from_syslog(received)
    assert verify(auditor_for(_settings(data), make_engine(_settings(data).service.db_url())).log, remote).ok is False


def read_anchors_from_syslog(messages: list[str]):
    out = []
    for m in messages:
        item = json.loads(m.split("anchor ", 1)[1].rstrip("\x00"))
        out.append((item["seq"], item["hash"], item.get("ts", ""), item.get("mac", "")))
    return out
