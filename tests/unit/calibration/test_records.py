"""Schemas of calibration records: the example file passes, bad records fail with located
errors (FILE:LINE: field: message)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from calibration.records import (
    Certificate,
    Instrument,
    VerificationRecord,
    cross_check,
    dependency_order,
    load_records,
    record_json,
)
from daq.config.yamlsrc import SourceErrors

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "config/calibration/example-records.yaml"


def example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    return data


def errors_of(tmp_path: Path, text: str) -> list[str]:
    p = tmp_path / "records.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(SourceErrors) as info:
        load_records(p)
    return [str(e) for e in info.value.errors]


def test_example_loads_as_a_three_level_chain() -> None:
    records = load_records(EXAMPLE)
    roles = {i.id: i.role for i in records.instruments}
    assert sorted(roles.values()) == ["national_standard", "reference", "working"]
    by_instrument = {c.instrument: c for c in records.certificates}
    working = next(i for i, r in roles.items() if r == "working")
    ref_cert = by_instrument[working].reference_certificates[0]
    ref = next(c for c in records.certificates if c.id == ref_cert)
    assert roles[ref.instrument] == "reference"
    top = next(c for c in records.certificates if c.id == ref.reference_certificates[0])
    assert roles[top.instrument] == "national_standard"
    assert top.reference_certificates == []
    assert all(c.model["kind"] == "gain_offset" for c in records.certificates)
    assert len(records.verifications) == 1


def test_records_round_trip_through_canonical_json() -> None:
    for rec in load_records(EXAMPLE).records():
        again = type(rec).model_validate_json(record_json(rec))
        assert again == rec
        assert record_json(again) == record_json(rec)


def test_accuracy_class_uses_the_key_class() -> None:
    inst = Instrument.model_validate(
        {**example()["instruments"][2], "accuracy": {"class": "0.5S"}})
    assert inst.accuracy.class_ == "0.5S"
    assert '"class":"0.5S"' in record_json(inst)


@pytest.mark.parametrize(("accuracy", "message"), [
    ({"class": "0.5", "a_pct_reading": 0.1, "b_pct_range": 0.0}, "not both"),
    ({"a_pct_reading": 0.1}, "both a_pct_reading and b_pct_range"),
    ({}, "give class"),
])
def test_accuracy_is_a_class_or_an_mpe(accuracy: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Instrument.model_validate({**example()["instruments"][2], "accuracy": accuracy})


@pytest.mark.parametrize(("change", "message"), [
    ({"points": [{"nominal": 1, "reference": 1, "indicated": 1, "error": 0, "U": 0, "k": 2}]},
     "greater than 0"),
    ({"points": [{"nominal": 1, "reference": 1, "indicated": 1, "error": 0, "U": 1, "k": -2}]},
     "greater than 0"),
    ({"valid_until": "2024-06-01"}, "must be after calibration_date"),
    ({"valid_until": None, "interval_days": None}, "exactly one of valid_until"),
    ({"interval_days": 365}, "exactly one of valid_until"),
    ({"model": {"kind": "spline"}}, "unknown model kind"),
    ({"model": {"kind": "gain_offset", "c0": 0.0}}, "malformed model data"),
    ({"colour": "blue"}, "Extra inputs"),
])
def test_bad_certificates_are_rejected(change: dict[str, Any], message: str) -> None:
    good = example()["certificates"][2]
    with pytest.raises(ValidationError, match=message):
        Certificate.model_validate({**good, **change})


def test_records_are_frozen() -> None:
    cert = load_records(EXAMPLE).certificates[0]
    with pytest.raises(ValidationError):
        cert.id = "other"


def test_verification_next_due_after_date() -> None:
    good = example()["verifications"][0]
    with pytest.raises(ValidationError, match="next_due"):
        VerificationRecord.model_validate({**good, "next_due": good["date"]})


def test_schema_errors_are_located(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("U: 6.0e-6, k: 2.0}", "U: -6.0e-6, k: 2.0}")
    text = text.replace("    role: reference\n", "    role: boss\n")
    errs = errors_of(tmp_path, text)
    lines = text.splitlines()
    role_line = next(i for i, s in enumerate(lines, 1) if "role: boss" in s)
    u_line = next(i for i, s in enumerate(lines, 1) if "U: -6.0e-6" in s)
    assert errs[0].startswith(f"{tmp_path / 'records.yaml'}:{role_line}: instruments[1].role: ")
    assert errs[1].startswith(
        f"{tmp_path / 'records.yaml'}:{u_line}: certificates[2].points[0].U: ")
    assert len(errs) == 2


def test_cross_record_errors_are_located(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("reference_certificates: [NIM-2024-DCV-0420]",
                        "reference_certificates: []")
    text = text.replace("  - instrument: dmm-34465a-07\n    date:",
                        "  - instrument: dmm-nowhere\n    date:")
    errs = errors_of(tmp_path, text)
    assert any("certificates[2].reference_certificates: empty, but instrument "
               "'dmm-34465a-07' is a working instrument" in e for e in errs)
    assert any("verifications[0].instrument: unknown instrument 'dmm-nowhere'" in e
               for e in errs)


def test_unknown_reference_and_duplicates_and_cycles() -> None:
    data = example()
    data["certificates"][1]["reference_certificates"] = ["LAB-2024-0815"]
    data["instruments"].append(data["instruments"][0])
    from calibration.records import RecordSet

    problems = cross_check(RecordSet.model_validate(data))
    messages = [m for _, m in problems]
    assert "duplicate instrument id 'nim-jvs-01'" in messages
    assert any("cycle" in m for m in messages)
    data["certificates"][1]["reference_certificates"] = ["NOPE"]
    problems = cross_check(RecordSet.model_validate(data))
    assert (("certificates", 1, "reference_certificates", 0), "unknown certificate 'NOPE'") \
        in problems


def test_dependency_order_puts_references_first() -> None:
    certs = load_records(EXAMPLE).certificates
    ordered = dependency_order(list(reversed(certs)))
    assert [c.id for c in ordered] == [c.id for c in certs]


def test_json_records_file_is_located_too(tmp_path: Path) -> None:
    p = tmp_path / "records.json"
    p.write_text('{\n  "instruments": [\n    {"id": "x"}\n  ]\n}\n', encoding="utf-8")
    with pytest.raises(SourceErrors) as info:
        load_records(p)
    assert str(info.value.errors[0]).startswith(f"{p}:3: instruments[0].")


def test_a_cycle_already_among_known_certificates_is_not_the_files_doing() -> None:
    from calibration.records import RecordSet

    data = example()
    certs = {c["id"]: c for c in data["certificates"]}
    nat, ref, dmm = (Certificate.model_validate(c) for c in data["certificates"])
    known_cycle = {nat.id: nat.model_copy(update={"reference_certificates": [dmm.id]}),
                   ref.id: ref, dmm.id: dmm}

    def known(kind: str, rid: str) -> object:
        return known_cycle.get(rid) if kind == "certificate" else None

    # a new certificate citing into a cycle a registry already holds: its own file is fine
    new = Certificate.model_validate({**certs[dmm.id], "id": "LAB-NEW"})
    assert cross_check(RecordSet(certificates=[new]), known) == [  # type: ignore[arg-type]
        (("certificates", 0, "instrument"), f"unknown instrument {dmm.instrument!r}")]
    # the same certificate cited by the stored national standard's: it closes one
    closing = nat.model_copy(update={"reference_certificates": [ref.id]})
    assert cross_check(RecordSet(certificates=[closing]), known) == [  # type: ignore[arg-type]
        (("certificates", 0, "instrument"), f"unknown instrument {nat.instrument!r}"),
        (("certificates", 0, "reference_certificates", 0),
         f"closes a cycle: {nat.id} → {ref.id} → {nat.id} ({ref.id} in the registry)")]
