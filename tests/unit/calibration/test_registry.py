"""The registry: round trips, the audit chain, and tampering behind its back."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from calibration.records import Certificate, load_records
from calibration.registry import GENESIS, Registry, RegistryError

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "config/calibration/example-records.yaml"


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    r = Registry(tmp_path / "var" / "registry.sqlite")
    r.import_records(load_records(EXAMPLE), "alice", "initial import")
    yield r
    r.close()


def test_put_get_list_delete_round_trip(tmp_path: Path) -> None:
    records = load_records(EXAMPLE)
    with Registry(tmp_path / "r.sqlite") as r:
        nat, ref, work = records.instruments
        assert r.put(nat, "alice", "new standard") == "create"
        assert r.get("instrument", nat.id) == nat
        assert r.put(nat, "alice", "again") is None  # unchanged: no audit entry
        changed = nat.model_copy(update={"location": "elsewhere"})
        assert r.put(changed, "bob", "moved") == "update"
        assert r.get("instrument", nat.id) == changed
        r.put(ref, "alice", "x")
        assert [i.record_id for i in r.list("instrument")] == sorted([nat.id, ref.id])
        r.delete("instrument", ref.id, "alice", "retired")
        assert r.get("instrument", ref.id) is None
        actions = [(e.action, e.who, e.record_id) for e in r.audit()]
        assert actions == [("create", "alice", nat.id), ("update", "bob", nat.id),
                           ("create", "alice", ref.id), ("delete", "alice", ref.id)]
        assert r.audit()[0].prev_sha256 == GENESIS
        assert r.audit()[-1].record_sha256 is None
        assert r.verify() == []
        assert work.id not in {i.record_id for i in r.list("instrument")}


def test_references_are_enforced(tmp_path: Path) -> None:
    records = load_records(EXAMPLE)
    with Registry(tmp_path / "r.sqlite") as r:
        with pytest.raises(RegistryError, match="unknown instrument"):
            r.put(records.certificates[0], "alice", "x")
        r.import_records(records, "alice", "import")
        with pytest.raises(RegistryError, match="still referenced"):
            r.delete("certificate", records.certificates[0].id, "alice", "x")
        with pytest.raises(RegistryError, match="still referenced"):
            r.delete("instrument", records.instruments[2].id, "alice", "x")
        with pytest.raises(RegistryError, match="no certificate"):
            r.delete("certificate", "nope", "alice", "x")
        with pytest.raises(RegistryError, match="reason"):
            r.put(records.instruments[0].model_copy(update={"location": "y"}), "alice", " ")
        assert r.verify() == []


def test_import_is_all_or_nothing(tmp_path: Path) -> None:
    records = load_records(EXAMPLE)
    broken = records.model_copy(update={"verifications": []})
    with Registry(tmp_path / "r.sqlite") as r:
        # certificates out of reference order are put in order
        shuffled = broken.model_copy(update={"certificates": broken.certificates[::-1]})
        r.import_records(shuffled, "alice", "import")
        assert len(r.audit()) == 6
        with pytest.raises(RegistryError):
            r.import_records(records.model_copy(update={"certificates": [
                records.certificates[2].model_copy(update={"instrument": "gone"})]}),
                "alice", "bad")
        assert len(r.audit()) == 6


def test_export_import_json(reg: Registry, tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    reg.export_json(out)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert sorted(data) == ["certificates", "instruments", "keys", "verifications"]
    with Registry(tmp_path / "copy.sqlite") as copy:
        entries = copy.import_json(out, "bob", "copy")
        assert len(entries) == 7
        for kind in ("instrument", "certificate", "verification"):
            assert copy.list(kind) == reg.list(kind)
        assert copy.verify() == []


def test_audit_chain_verifies(reg: Registry) -> None:
    entries = reg.audit()
    assert [e.seq for e in entries] == list(range(1, 8))
    for prev, e in itertools.pairwise(entries):
        assert e.prev_sha256 == prev.entry_sha256
        assert e.computed_sha256() == e.entry_sha256
    assert reg.verify() == []
    assert reg.head() == entries[-1].entry_sha256


def _tamper(path: Path, sql: str, *args: object) -> None:
    con = sqlite3.connect(path)
    con.execute("DROP TRIGGER IF EXISTS audit_no_update")
    con.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    con.execute(sql, args)
    con.commit()
    con.close()


def test_the_audit_log_refuses_ordinary_edits(reg: Registry) -> None:
    con = sqlite3.connect(reg.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("UPDATE audit SET why = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("DELETE FROM audit WHERE seq = 1")
    con.close()


def test_edited_audit_entry_is_named(reg: Registry) -> None:
    _tamper(reg.path, "UPDATE audit SET why = 'nothing to see' WHERE seq = 3")
    problems = reg.verify()
    assert problems[0].startswith("audit entry 3 was altered")


def test_deleted_audit_entry_is_named(reg: Registry) -> None:
    _tamper(reg.path, "DELETE FROM audit WHERE seq = 4")
    assert reg.verify() == ["audit entry 4 is missing (next entry is 5)"]


def test_last_audit_entry_deleted_shows_as_record_without_entry(reg: Registry) -> None:
    _tamper(reg.path, "DELETE FROM audit WHERE seq = 7")
    assert reg.verify() == ["verification 'VR-2024-000123' has no audit entry"]


def test_record_changed_behind_the_back_is_named(reg: Registry) -> None:
    cert = reg.get("certificate", "LAB-2024-0815")
    assert isinstance(cert, Certificate)
    text = reg.raw_json("certificate", cert.id)
    assert text is not None
    _tamper(reg.path, "UPDATE certificates SET json = ? WHERE id = ?",
            text.replace('"U":4.5e-05', '"U":4.5e-06'), cert.id)
    seq = next(e.seq for e in reg.audit() if e.record_id == cert.id)
    assert reg.verify() == [f"certificate 'LAB-2024-0815' does not match its audit entry {seq}: "
                            "changed behind the registry's back"]


def test_record_inserted_or_deleted_behind_the_back(reg: Registry) -> None:
    _tamper(reg.path, "INSERT INTO instruments (id, json) VALUES ('ghost', '{}')")
    assert reg.verify() == ["instrument 'ghost' has no audit entry"]
    _tamper(reg.path, "DELETE FROM instruments WHERE id = 'ghost'")
    _tamper(reg.path, "DELETE FROM verifications")
    assert reg.verify()[0].startswith("verification 'VR-2024-000123' of audit entry 7 is "
                                      "missing")


def _daq(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # the default registry is registry.sqlite in the data directory: var/ of the test's dir
    env = {**os.environ, "DAQ_USER": "carol", "DAQ_HOME": str(cwd / "var")}
    env.pop("DAQ_REGISTRY", None)
    return subprocess.run([sys.executable, "-m", "daq.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)


def test_cli_import_list_show_verify(tmp_path: Path) -> None:
    proc = _daq("cert", "import", str(EXAMPLE), "--why", "first import", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    db = tmp_path / "var" / "registry.sqlite"
    with Registry(db) as r:
        assert {e.who for e in r.audit()} == {"carol"}
        assert {e.why for e in r.audit()} == {"first import"}
    proc = _daq("cert", "list", cwd=tmp_path)
    assert proc.returncode == 0
    assert "NIM-2024-DCV-0420" in proc.stdout
    proc = _daq("cert", "show", "LAB-2024-0815", cwd=tmp_path)
    assert proc.returncode == 0
    body, sha_line = proc.stdout.rsplit("sha256: ", 1)
    assert json.loads(body)["id"] == "LAB-2024-0815"
    assert len(sha_line.strip()) == 64
    assert _daq("cert", "show", "nope", cwd=tmp_path).returncode == 1

    proc = _daq("audit", "verify", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.startswith("audit log intact: 7 entries")

    _tamper(db, "UPDATE audit SET who = 'mallory' WHERE seq = 2")
    proc = _daq("audit", "verify", "--registry", str(db), cwd=REPO)
    assert proc.returncode == 1
    assert proc.stderr.startswith("audit entry 2 was altered")


def test_cli_import_errors_are_located(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("instruments:\n  - id: x\n    colour: red\n", encoding="utf-8")
    proc = _daq("cert", "import", str(bad), "--registry", str(tmp_path / "r.sqlite"),
                cwd=tmp_path)
    assert proc.returncode == 2
    assert f"{bad}:3: instruments[0].colour: unknown field" in proc.stderr.splitlines()
    assert _daq("audit", "verify", "--registry", str(tmp_path / "none.sqlite"),
                cwd=tmp_path).returncode == 2


def test_an_anchor_catches_a_log_rewritten_from_the_start(tmp_path: Path) -> None:
    assert _daq("cert", "import", str(EXAMPLE), "--why", "first", cwd=tmp_path).returncode == 0
    db = tmp_path / "var" / "registry.sqlite"
    head = _daq("audit", "head", "--registry", str(db), cwd=tmp_path).stdout.strip()
    seq, digest = head.split(":")
    assert seq == "7"
    assert len(digest) == 64
    ok = _daq("audit", "verify", "--registry", str(db), "--anchor", head, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "1 anchors hold" in ok.stdout
    # mallory rebuilds the whole registry with a changed history: the chain itself verifies
    db.unlink()
    assert _daq("cert", "import", str(EXAMPLE), "--why", "innocent", cwd=tmp_path).returncode == 0
    assert _daq("audit", "verify", "--registry", str(db), cwd=tmp_path).returncode == 0
    caught = _daq("audit", "verify", "--registry", str(db), "--anchor", head, cwd=tmp_path)
    assert caught.returncode == 1
    assert caught.stderr.startswith(f"anchor {head}: audit entry 7 has hash ")
    assert "the log was rewritten" in caught.stderr
    bad = _daq("audit", "verify", "--registry", str(db), "--anchor", "7:abc", cwd=tmp_path)
    assert bad.returncode == 2


def test_read_only_registry_reads_and_refuses_writes(reg: Registry, tmp_path: Path) -> None:
    ro = Registry(reg.path, read_only=True)
    try:
        assert ro.head() == reg.head()
        assert ro.verify() == []
        cert = ro.get("certificate", "LAB-2024-0815")
        assert cert is not None
        with pytest.raises(RegistryError, match="readonly") as caught:
            ro.put(cert.model_copy(update={"conformity": "changed"}), "x", "y")
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    finally:
        ro.close()
    assert reg.verify() == []
    with pytest.raises(RegistryError):
        Registry(tmp_path / "absent.sqlite", read_only=True)
    (tmp_path / "empty.sqlite").write_bytes(b"")
    with pytest.raises(RegistryError, match="not a readable registry"):
        Registry(tmp_path / "empty.sqlite", read_only=True)


def test_a_locked_file_is_a_registry_error(reg: Registry) -> None:
    """Locked by another writer for longer than ``busy_timeout_s``: reads and writes raise
    RegistryError (sqlite3's error is the cause), and work again once the lock is gone."""
    ro = Registry(reg.path, read_only=True, busy_timeout_s=0.05)
    rw = Registry(reg.path, busy_timeout_s=0.05)
    cert = reg.get("certificate", "LAB-2024-0815")
    assert cert is not None
    locker = sqlite3.connect(reg.path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(RegistryError, match="locked") as caught:
            ro.head()
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        with pytest.raises(RegistryError, match="locked"):
            ro.list("certificate")
        with pytest.raises(RegistryError, match="locked"):
            rw.put(cert.model_copy(update={"conformity": "x"}), "x", "y")
        locker.execute("ROLLBACK")
        assert ro.head() == reg.head()
    finally:
        locker.close()
        ro.close()
        rw.close()


def test_a_corrupt_file_or_record_is_a_registry_error(reg: Registry) -> None:
    _tamper(reg.path, "UPDATE certificates SET json = '{not json' WHERE id = ?", "LAB-2024-0815")
    with pytest.raises(RegistryError, match="does not parse"):
        reg.get("certificate", "LAB-2024-0815")
    with pytest.raises(RegistryError, match="does not parse"):
        reg.list("certificate")
    ro = Registry(reg.path, read_only=True)
    try:
        reg.path.write_bytes(b"not a database " * 512)  # overwritten under an open connection
        with pytest.raises(RegistryError) as caught:
            ro.head()
        assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
        with pytest.raises(RegistryError):
            ro.verify()
    finally:
        ro.close()


NAT_CERT, REF_CERT, DMM_CERT = "NIM-2024-DCV-0001", "NIM-2024-DCV-0420", "LAB-2024-0815"


def _citing(reg: Registry, cert_id: str, *refs: str) -> Certificate:
    cert = reg.get("certificate", cert_id)
    assert isinstance(cert, Certificate)
    return cert.model_copy(update={"reference_certificates": list(refs)})


def test_a_put_that_closes_a_cycle_with_stored_records_is_refused(reg: Registry) -> None:
    before = reg.audit()
    # the national standard's certificate made to cite the DMM's, which descends from it
    with pytest.raises(RegistryError, match=(
            f"closes a cycle: {NAT_CERT} → {DMM_CERT} → {REF_CERT} → {NAT_CERT}")):
        reg.put(_citing(reg, NAT_CERT, DMM_CERT), "mallory", "oops")
    assert reg.audit() == before
    assert reg.verify() == []
    # citing something that is not its descendant is fine
    reg.put(_citing(reg, REF_CERT, NAT_CERT), "alice", "unchanged")


def test_an_import_that_closes_a_cycle_with_stored_records_is_refused(reg: Registry) -> None:
    from calibration.records import RecordSet

    before = reg.audit()
    # through a new certificate of the file: REF cites NEW, NEW cites the stored DMM's,
    # which cites REF
    new = _citing(reg, REF_CERT, DMM_CERT).model_copy(update={"id": "NEW-1"})
    records = RecordSet(certificates=[_citing(reg, REF_CERT, "NEW-1"), new])
    with pytest.raises(RegistryError, match="closes a cycle"):
        reg.import_records(records, "mallory", "oops")
    assert reg.audit() == before
    # replacing a stored certificate breaks the old edge: no cycle through it
    reg.import_records(RecordSet(certificates=[
        _citing(reg, DMM_CERT, NAT_CERT), _citing(reg, REF_CERT, DMM_CERT)]), "alice", "ok")
    assert reg.verify() == []


def test_cli_import_closing_a_cycle_is_located_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    assert _daq("cert", "import", str(EXAMPLE), "--registry", str(db),
                cwd=tmp_path).returncode == 0
    with Registry(db) as r:
        nat = _citing(r, NAT_CERT, DMM_CERT)
        entries = len(r.audit())
    bad = tmp_path / "cycle.json"
    bad.write_text(json.dumps({"certificates": [nat.model_dump(mode="json", by_alias=True,
                                                               exclude_none=True)]}, indent=2),
                   encoding="utf-8")
    line = next(i for i, text in enumerate(bad.read_text().splitlines(), 1)
                if DMM_CERT in text)
    proc = _daq("cert", "import", str(bad), "--registry", str(db), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"{bad}:{line}: certificates[0].reference_certificates[0]: closes a cycle: "
        f"{NAT_CERT} → {DMM_CERT} → {REF_CERT} → {NAT_CERT} ({DMM_CERT}, {REF_CERT} in the "
        "registry)"]
    with Registry(db) as r:
        assert len(r.audit()) == entries
        assert r.verify() == []
