"""Traceability chains of three levels (working DMM → reference → national standard), and
each way a chain can break."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from calibration.chain import Records, resolve
from calibration.records import Certificate, load_records

REPO = Path(__file__).resolve().parents[3]
DMM, REF, NAT = "dmm-34465a-07", "ref-3458a-01", "nim-jvs-01"
DMM_CERT, REF_CERT, NAT_CERT = "LAB-2024-0815", "NIM-2024-DCV-0420", "NIM-2024-DCV-0001"


@pytest.fixture
def records() -> Records:
    rs = load_records(REPO / "config" / "calibration" / "example-records.yaml")
    return Records.of(rs.instruments, rs.certificates)


def replace(records: Records, cert_id: str, **changes: object) -> None:
    cert = records.certificates[cert_id]
    records.certificates[cert_id] = Certificate.model_validate(
        {**cert.model_dump(by_alias=True), **changes})


def problems(link: object) -> list[str]:
    out: list[str] = []
    stack = [link]
    while stack:
        node = stack.pop()
        out += list(node.problems)  # type: ignore[attr-defined]
        stack += list(node.references)  # type: ignore[attr-defined]
    return out


def test_an_intact_chain_of_three_levels(records: Records) -> None:
    chain = resolve(records, DMM, dt.date(2024, 12, 1))
    assert chain.ok
    assert [chain.certificate, chain.references[0].certificate,
            chain.references[0].references[0].certificate] == [DMM_CERT, REF_CERT, NAT_CERT]
    # each reference is judged at the instant it was used: the child's calibration date
    assert chain.references[0].at == records.certificates[DMM_CERT].calibration_date
    # the reference's certificate has expired since, which does not matter at that instant
    assert resolve(records, DMM, dt.date(2025, 5, 1)).ok


def test_no_certificate_at_the_instant(records: Records) -> None:
    chain = resolve(records, DMM, dt.date(2024, 1, 1))
    assert not chain.ok
    assert problems(chain) == [f"no certificate of '{DMM}' issued on or before 2024-01-01"]


def test_expired_at_the_instant(records: Records) -> None:
    (p,) = problems(resolve(records, DMM, dt.date(2025, 12, 1)))
    assert p == f"certificate {DMM_CERT} expired on 2025-06-10, before 2025-12-01"


def test_reference_expired_when_it_was_used(records: Records) -> None:
    replace(records, REF_CERT, valid_until="2024-05-01", interval_days=None)
    (p,) = problems(resolve(records, DMM, dt.date(2024, 12, 1)))
    assert p == f"certificate {REF_CERT} expired on 2024-05-01, before 2024-06-10"


def test_missing_reference_certificate(records: Records) -> None:
    del records.certificates[NAT_CERT]
    (p,) = problems(resolve(records, DMM, dt.date(2024, 12, 1)))
    assert p == f"certificate {NAT_CERT} is not in the registry"


def test_reference_used_outside_its_calibrated_range(records: Records) -> None:
    cert = records.certificates[DMM_CERT]
    points = [p.model_dump() for p in cert.points]
    points[-1] = {**points[-1], "nominal": 100.0, "reference": 100.0, "indicated": 100.0,
                  "error": 0.0}
    replace(records, DMM_CERT, points=points)
    (p,) = problems(resolve(records, DMM, dt.date(2024, 12, 1)))
    assert p.startswith("used over")
    assert "calibrated over" in p


def test_a_reference_used_at_its_end_point_is_inside_its_range(records: Records) -> None:
    ref = records.certificates[REF_CERT]
    top = max(ref.points, key=lambda p: p.nominal)
    cert = records.certificates[DMM_CERT]
    points = [p.model_dump() for p in cert.points]
    # the reference's true value at its top point: off the nominal by its error, within U
    used = top.nominal + abs(top.error) + 0.5 * top.U
    points[-1] = {**points[-1], "reference": used}
    replace(records, DMM_CERT, points=points)
    assert problems(resolve(records, DMM, dt.date(2024, 12, 1))) == []
    points[-1] = {**points[-1], "reference": top.nominal + abs(top.error) + 2 * top.U}
    replace(records, DMM_CERT, points=points)
    (p,) = problems(resolve(records, DMM, dt.date(2024, 12, 1)))
    assert p.startswith("used over")


def test_a_cycle(records: Records) -> None:
    replace(records, NAT_CERT, reference_certificates=[DMM_CERT])
    found = problems(resolve(records, DMM, dt.date(2024, 12, 1)))
    assert any(p.startswith(f"cycle: {DMM_CERT} → {REF_CERT} → {NAT_CERT} → {DMM_CERT}")
               for p in found), found


def test_a_chain_that_does_not_end_at_a_national_standard(records: Records) -> None:
    replace(records, REF_CERT, reference_certificates=[])
    (p,) = problems(resolve(records, DMM, dt.date(2024, 12, 1)))
    assert p == f"the chain ends at '{REF}' (role reference), not at a national standard"


def test_daq_trace_prints_the_tree_and_exits_1_when_broken(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "DAQ_REGISTRY": str(tmp_path / "r.sqlite"), "DAQ_USER": "test"}

    def daq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "daq.cli", *args], capture_output=True,
                              text=True, env=env, cwd=REPO)

    assert daq("cert", "import", "config/calibration/example-records.yaml").returncode == 0
    ok = daq("trace", DMM, "--at", "2024-12-01")
    assert ok.returncode == 0, ok.stderr
    assert NAT_CERT in ok.stdout
    assert "chain intact" in ok.stdout
    broken = daq("trace", DMM, "--at", "2025-12-01", "--json")
    assert broken.returncode == 1
    doc = json.loads(broken.stdout)
    assert doc["ok"] is False
    assert doc["problems"] == [f"certificate {DMM_CERT} expired on 2025-06-10, before 2025-12-01"]


def reasons(link: object) -> list[str]:
    out: list[str] = []
    stack = [link]
    while stack:
        node = stack.pop()
        out += list(node.reasons)  # type: ignore[attr-defined]
        stack += list(node.references)  # type: ignore[attr-defined]
    return out


def test_a_reference_calibrated_after_its_use_breaks_the_link(records: Records) -> None:
    # the DMM was calibrated on 2024-06-10 against REF_CERT; a REF_CERT issued on
    # 2024-07-01 cannot have been the reference's calibration at the time, though it does
    # not expire before the use (2025-07-01)
    replace(records, REF_CERT, calibration_date="2024-07-01")
    chain = resolve(records, DMM, dt.date(2024, 12, 1))
    assert not chain.ok
    (p,) = problems(chain)
    assert p == (f"certificate {REF_CERT} was calibrated on 2024-07-01, after its use on "
                 f"2024-06-10 (the calibration of {DMM_CERT})")
    assert reasons(chain) == ["reference_calibrated_after_use"]
    link = chain.references[0]
    assert link.as_dict()["reasons"] == ["reference_calibrated_after_use"]
    # the same day is not after: a reference calibrated in the morning, used that afternoon
    replace(records, REF_CERT, calibration_date="2024-06-10")
    assert resolve(records, DMM, dt.date(2024, 12, 1)).ok


def test_every_problem_has_its_reason(records: Records) -> None:
    assert reasons(resolve(records, DMM, dt.date(2025, 12, 1))) == ["expired"]
    assert reasons(resolve(records, DMM, dt.date(2024, 1, 1))) == ["no_certificate"]
    replace(records, NAT_CERT, reference_certificates=[DMM_CERT])
    chain = resolve(records, DMM, dt.date(2024, 12, 1))
    assert "cycle" in reasons(chain)
    assert len(reasons(chain)) == len(problems(chain))


def test_daq_trace_does_not_trust_a_tampered_registry(tmp_path: Path) -> None:
    import os
    import sqlite3
    import subprocess
    import sys

    db = tmp_path / "r.sqlite"
    env = {**os.environ, "DAQ_REGISTRY": str(db), "DAQ_USER": "test"}

    def daq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "daq.cli", *args], capture_output=True,
                              text=True, env=env, cwd=REPO)

    assert daq("cert", "import", "config/calibration/example-records.yaml").returncode == 0
    assert daq("trace", DMM, "--at", "2025-12-01").returncode == 1  # expired on 2025-06-10
    # behind the registry's back: the expired certificate made valid for two more years
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE certificates SET json = replace(json, '2025-06-10', '2027-06-10')"
                     " WHERE id = ?", (DMM_CERT,))
    conn.close()
    for args in ((), ("--json",)):
        proc = daq("trace", DMM, "--at", "2025-12-01", *args)
        assert proc.returncode == 1
        assert "chain intact" not in proc.stdout
        assert proc.stdout == ""
        assert proc.stderr.splitlines() == [
            f"{db}: the audit log fails its check (daq audit verify): certificate "
            f"'{DMM_CERT}' does not match its audit entry 6: changed behind the registry's "
            "back", "no traceability chain from a registry that is not trusted"]


def set_instrument(records: Records, inst_id: str, **changes: object) -> None:
    inst = records.instruments[inst_id]
    records.instruments[inst_id] = type(inst).model_validate(
        {**inst.model_dump(by_alias=True), **changes})


def test_the_instruments_recall_interval_overrides_the_certificates(records: Records) -> None:
    # the DMM's certificate recommends until 2025-06-10; its owner recalls it every 180 days
    set_instrument(records, DMM, recall_interval_days=180)
    chain = resolve(records, DMM, dt.date(2024, 12, 10))
    assert chain.expires == dt.date(2024, 12, 7)
    (p,) = problems(chain)
    assert p == (f"certificate {DMM_CERT} expired on 2024-12-07, before 2024-12-10 (recall "
                 f"interval of {DMM}: 180 days)")
    # and a longer interval than the certificate recommends is the owner's call too
    set_instrument(records, DMM, recall_interval_days=730)
    assert resolve(records, DMM, dt.date(2025, 12, 1)).ok
    # a reference's own recall interval applies when it was used
    set_instrument(records, REF, recall_interval_days=90)  # 2024-03-01 + 90 d < 2024-06-10
    assert reasons(resolve(records, DMM, dt.date(2024, 12, 1))) == ["expired"]


def test_without_a_recall_interval_the_certificates_recommendation_applies(
        records: Records) -> None:
    from calibration.records import expires_on, record_json

    inst = records.instruments[DMM]
    cert = records.certificates[DMM_CERT]
    assert inst.recall_interval_days is None
    assert expires_on(cert, inst) == cert.expires == dt.date(2025, 6, 10)
    assert expires_on(cert, None) == cert.expires
    # an instrument record that does not set it keeps its JSON, so its hash in the registry
    assert "recall_interval_days" not in record_json(inst)
