"""Mandatory verification status at chosen dates, on a register covering every mode and
boundary; per-enterprise summary; GB 17167 class findings; the legal data files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from calibration.legal import class_number, load_classes, load_periods
from calibration.records import Certificate, Instrument, RecordSet, VerificationRecord
from calibration.verification import (
    Register,
    VerificationError,
    add_months,
    class_findings,
    register_status,
    status,
    summaries,
)
from daq.config.yamlsrc import SourceErrors

D = dt.date
AT = D(2026, 3, 10)
PERIODS = load_periods()
CLASSES = load_classes()


def inst(id_: str, owner: str = "ent-a", **extra: Any) -> Instrument:
    data: dict[str, Any] = {
        "id": id_, "maker": "m", "model": "x", "serial": id_, "quantity": "energy",
        "unit": "kWh", "range": {"min": 0.0, "max": 1.0e6}, "resolution": 0.01,
        "accuracy": {"class": "1"}, "owner": owner, "location": "site", "role": "working",
        "mandatory_verification": True}
    data.update(extra)
    return Instrument.model_validate(data)


def ver(instrument: str, date: D, next_due: D, result: str = "pass",
        number: str | None = None) -> VerificationRecord:
    return VerificationRecord(instrument=instrument, date=date, next_due=next_due,
                              result=result,  # type: ignore[arg-type]
                              authority="City Institute of Metrology",
                              record_number=number or f"VR-{instrument}-{date}")


def cert(instrument: str, date: D, valid_until: D) -> Certificate:
    return Certificate.model_validate({
        "id": f"C-{instrument}-{date}", "instrument": instrument, "laboratory": "lab",
        "accreditation": "CNAS", "calibration_date": date, "valid_until": valid_until,
        "reference_certificates": ["REF"],
        "points": [{"nominal": 1.0, "reference": 1.0, "indicated": 1.0, "error": 0.0,
                    "U": 0.001, "k": 2.0}],
        "model": {"kind": "offset", "c0": 0.0, "u_c0": 0.0}, "conformity": "pass"})


def periodic(**plan: Any) -> dict[str, Any]:
    return {"verification": {"mode": "periodic", **plan}}


@pytest.fixture
def register() -> Register:
    instruments = [
        inst("due-today", **periodic(period_months=12), energy_type="electricity"),
        inst("due-in-window", **periodic(period_months=12), energy_type="electricity"),
        inst("due-after-window", **periodic(period_months=12), energy_type="electricity",
             energy_flow_weight=10.0),
        inst("overdue-1", **periodic(period_months=12), energy_type="electricity",
             energy_flow_weight=5.0),
        inst("never", **periodic(period_months=12, installed=D(2026, 1, 1))),
        inst("failed", **periodic(period_months=12)),
        # a small water meter: first verification only, 6-year life from the type's default
        inst("water-dn20-old", instrument_type="water_meter", dn=20, energy_type="water",
             verification={"mode": "first_only"}, owner="ent-b"),
        inst("water-dn20-new", instrument_type="water_meter", dn=20, energy_type="water",
             verification={"mode": "first_only", "installed": D(2021, 6, 1)},
             owner="ent-b"),
        # a period shorter than the record's next_due makes the meter due earlier
        inst("short-period", **periodic(period_days=90)),
        inst("lab-dmm", mandatory_verification=False),
        inst("lab-dmm-expired", mandatory_verification=False),
        inst("spare", mandatory_verification=False),
    ]
    verifications = [
        ver("due-today", D(2025, 3, 10), D(2026, 3, 10)),
        ver("due-in-window", D(2025, 4, 1), D(2026, 4, 1)),
        ver("due-after-window", D(2025, 6, 1), D(2026, 6, 1)),
        ver("overdue-1", D(2025, 3, 9), D(2026, 3, 9)),
        ver("failed", D(2025, 3, 1), D(2026, 3, 1)),
        ver("failed", D(2026, 3, 1), D(2027, 3, 1), result="fail"),
        ver("water-dn20-old", D(2020, 3, 5), D(2026, 3, 5)),
        ver("water-dn20-new", D(2021, 6, 1), D(2027, 6, 1)),
        ver("short-period", D(2026, 1, 1), D(2027, 1, 1)),
        # a verification in the future of AT does not count at AT
        ver("never", D(2026, 4, 1), D(2027, 4, 1)),
    ]
    certificates = [cert("lab-dmm", D(2025, 6, 1), D(2026, 6, 1)),
                    cert("lab-dmm-expired", D(2025, 1, 1), D(2026, 1, 1))]
    return Register.of(instruments, certificates, verifications)


@pytest.mark.parametrize(("instrument", "state", "due", "days_left"), [
    ("due-today", "due_soon", D(2026, 3, 10), 0),
    ("due-in-window", "due_soon", D(2026, 4, 1), 22),
    ("due-after-window", "valid", D(2026, 6, 1), 83),
    ("overdue-1", "overdue", D(2026, 3, 9), -1),
    ("never", "never_verified", None, None),
    ("failed", "failed", None, None),
    # installed (first verified) 2020-03-05 + 6 years: last day 2026-03-04
    ("water-dn20-old", "service_life_ended", D(2026, 3, 4), -6),
    ("water-dn20-new", "valid", D(2027, 5, 31), 447),
    ("short-period", "due_soon", D(2026, 4, 1), 22),  # 2026-01-01 + 90 d
    ("lab-dmm", "valid", D(2026, 6, 1), 83),
    ("lab-dmm-expired", "calibration_expired", D(2026, 1, 1), -68),
    ("spare", "not_required", None, None),
])
def test_status_at_a_date(register: Register, instrument: str, state: str, due: D | None,
                          days_left: int | None) -> None:
    s = status(register, instrument, AT, periods=PERIODS)
    assert (s.state, s.due, s.days_left) == (state, due, days_left), s.reason
    assert s.reason


def test_boundaries_move_with_the_date(register: Register) -> None:
    # the day before it is due and 30 days before: still in the window; 31 days: valid
    assert status(register, "due-today", AT - dt.timedelta(days=30)).state == "due_soon"
    assert status(register, "due-today", AT - dt.timedelta(days=31)).state == "valid"
    assert status(register, "due-today", AT + dt.timedelta(days=1)).state == "overdue"
    assert status(register, "due-today", AT, window_days=0).state == "due_soon"
    assert status(register, "due-after-window", AT, window_days=90).state == "due_soon"
    # the last day of the water meter's life, then the first day after
    assert status(register, "water-dn20-old", D(2026, 3, 4), periods=PERIODS).state == "due_soon"
    ended = status(register, "water-dn20-old", D(2026, 3, 5), periods=PERIODS)
    assert (ended.state, ended.since, ended.days_over) == ("service_life_ended",
                                                          D(2026, 3, 5), 1)


def test_reasons_and_dates(register: Register) -> None:
    over = status(register, "overdue-1", AT)
    assert over.since == D(2026, 3, 10)
    assert over.days_over == 1
    assert over.taints_readings
    assert "1 days ago" in over.reason
    assert over.last_record == "VR-overdue-1-2025-03-09"
    failed = status(register, "failed", AT)
    assert failed.since == D(2026, 3, 1)
    assert "failed" in failed.reason
    assert failed.taints_readings
    never = status(register, "never", AT)
    assert never.since == D(2026, 1, 1)
    assert never.taints_readings
    short = status(register, "short-period", AT)
    assert "ends before the record's next_due 2027-01-01" in (short.source or "")
    water = status(register, "water-dn20-old", AT, periods=PERIODS)
    assert water.mode == "first_only"
    assert "JJG 162-2019" in (water.source or "")
    assert not status(register, "lab-dmm-expired", AT).taints_readings
    assert not status(register, "due-today", AT).taints_readings


def test_water_meter_default_life_needs_the_periods_data() -> None:
    """Without the periods file a first-only meter falls back to the record's next_due and
    says that its service life is unknown."""
    r = Register.of([inst("w", instrument_type="water_meter", dn=20,
                          verification={"mode": "first_only"})],
                    verifications=[ver("w", D(2020, 3, 5), D(2026, 3, 5))])
    without = status(r, "w", AT)
    assert (without.state, without.due) == ("service_life_ended", D(2026, 3, 5))
    assert "service life unknown" in (without.source or "")
    assert status(r, "w", AT, periods=PERIODS).due == D(2026, 3, 4)


def test_default_mode_and_period_come_from_the_instrument_type() -> None:
    # DN 80 water meter: periodic, every 24 months by default
    r = Register.of([inst("w80", instrument_type="water_meter", dn=80)],
                    verifications=[ver("w80", D(2024, 3, 1), D(2027, 3, 1))])
    s = status(r, "w80", AT, periods=PERIODS)
    assert (s.mode, s.state, s.due) == ("periodic", "overdue", D(2026, 3, 1))
    # DN 40: first only, 4 years
    r = Register.of([inst("w40", instrument_type="water_meter", dn=40)],
                    verifications=[ver("w40", D(2023, 1, 10), D(2030, 1, 1))])
    s = status(r, "w40", AT, periods=PERIODS)
    assert (s.mode, s.due) == ("first_only", D(2027, 1, 9))
    # an unconfirmed default says so
    r = Register.of([inst("e", instrument_type="electricity_meter")],
                    verifications=[ver("e", D(2024, 1, 1), D(2099, 1, 1))])
    assert "unconfirmed" in (status(r, "e", AT, periods=PERIODS).source or "")


def test_register_sorted_by_urgency_and_filtered(register: Register) -> None:
    rows = register_status(register, AT, periods=PERIODS)
    assert [r.instrument for r in rows] == [
        "water-dn20-old", "overdue-1", "failed", "never", "lab-dmm-expired", "due-today",
        "due-in-window", "short-period", "due-after-window", "lab-dmm", "water-dn20-new",
        "spare"]
    assert [r.state for r in rows][:6] == ["service_life_ended", "overdue", "failed",
                                           "never_verified", "calibration_expired",
                                           "due_soon"]
    assert {r.instrument for r in register_status(register, AT, enterprise="ent-b")} == {
        "water-dn20-old", "water-dn20-new"}


def test_enterprise_summary(register: Register) -> None:
    rows = register_status(register, AT, periods=PERIODS)
    a, b = summaries(register, rows)
    assert a.enterprise == "ent-a"
    assert a.counts["overdue"] == 1
    assert a.counts["due_soon"] == 3  # due today, in the window, short period
    assert a.counts["not_required"] == 1
    # electricity meters: weights 1 (due today) + 1 (window) + 10 (valid) + 5 (overdue)
    assert a.energy_meters == 4
    assert a.valid_share == pytest.approx(12 / 17)
    assert (b.energy_meters, b.valid_share) == (2, 0.5)


def test_record_set_works_as_records(register: Register) -> None:
    rs = RecordSet(instruments=list(register.instruments.values()),
                   verifications=[v for vs in register.verifications.values() for v in vs],
                   certificates=[c for cs in register.certificates.values() for c in cs])
    assert status(rs, "overdue-1", AT) == status(register, "overdue-1", AT)


def test_errors(register: Register) -> None:
    with pytest.raises(VerificationError, match="not in the register"):
        status(register, "nope", AT)
    with pytest.raises(VerificationError, match="window_days"):
        status(register, "due-today", AT, window_days=-1)


def test_add_months_clamps() -> None:
    assert add_months(D(2024, 1, 31), 1) == D(2024, 2, 29)
    assert add_months(D(2024, 11, 15), 14) == D(2026, 1, 15)


def test_plan_validation() -> None:
    with pytest.raises(ValueError, match="at most one"):
        inst("x", **periodic(period_months=12, period_days=30))
    with pytest.raises(ValueError, match="first_only"):
        inst("x", verification={"mode": "periodic", "service_life_years": 6})
    with pytest.raises(ValueError, match="mandatory_verification is false"):
        inst("x", mandatory_verification=False, **periodic(period_months=12))


# -- GB 17167 classes ---------------------------------------------------------------------
def test_class_numbers() -> None:
    assert class_number("0.5S") < class_number("0.5") < class_number("1.0")
    assert class_number("2") == class_number("2.0")
    with pytest.raises(ValueError, match="not a number"):
        class_number("A")


def test_class_findings_against_2006() -> None:
    r = Register.of([
        inst("ok", energy_type="electricity", measurement_level="enterprise_boundary",
             metering_category="III", accuracy={"class": "0.5S"}),
        inst("bad", energy_type="electricity", measurement_level="enterprise_boundary",
             metering_category="II", accuracy={"class": "1"}),
        inst("no-cat", energy_type="electricity", measurement_level="enterprise_boundary"),
        inst("water-big", energy_type="water", measurement_level="enterprise_boundary",
             dn=300, accuracy={"class": "2.5"}),
        inst("water-small", energy_type="water", measurement_level="enterprise_boundary",
             dn=100, accuracy={"class": "2.5"}),
        inst("mpe", energy_type="steam", measurement_level="enterprise_boundary",
             accuracy={"a_pct_reading": 2.0, "b_pct_range": 1.0}),
        inst("sub", energy_type="electricity", measurement_level="secondary_unit"),
        inst("not-energy"),
    ])
    found = {f.instrument: f for f in class_findings(r, CLASSES, D(2025, 1, 1))}
    assert set(found) == {"bad", "no-cat", "water-big", "mpe", "sub"}
    assert (found["bad"].kind, found["bad"].required) == ("class_insufficient", "0.5S")
    assert found["bad"].confirmed is False
    assert "unconfirmed" in found["bad"].message
    assert found["no-cat"].kind == "unchecked"
    assert "metering_category" in found["no-cat"].message
    assert found["water-big"].required == "1.5"
    assert (found["mpe"].required, found["mpe"].actual) == ("2.5", "3 (a+b %)")
    assert found["sub"].kind == "unchecked"


def test_class_findings_after_2026_say_the_2025_tables_are_missing() -> None:
    r = Register.of([inst("bad", energy_type="electricity",
                          measurement_level="enterprise_boundary", metering_category="II")])
    (f,) = class_findings(r, CLASSES, AT)
    assert (f.kind, f.edition) == ("unchecked", "GB 17167-2025")
    (f,) = class_findings(r, CLASSES, AT, edition="GB 17167-2006")
    assert f.kind == "class_insufficient"


# -- the data files ---------------------------------------------------------------------
def test_legal_data_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "periods.yaml"
    bad.write_text("types:\n  water_meter:\n    name: w\n    rules:\n"
                   "      - mode: periodic\n        regulation: JJG 162\n"
                   "        confirmed: false\n        note: n\n", encoding="utf-8")
    with pytest.raises(SourceErrors) as exc:
        load_periods(bad)
    assert f"{bad}:5: types.water_meter.rules[0]: " in str(exc.value)
    assert "period_months" in str(exc.value)
    bad.write_text("types:\n  w:\n    name: w\n    rules:\n      - mode: first_only\n"
                   "        service_life_years: 6\n        regulation: JJG 162\n"
                   "        confirmed: false\n", encoding="utf-8")
    with pytest.raises(SourceErrors, match="unconfirmed figure needs a note"):
        load_periods(bad)
    classes = tmp_path / "classes.yaml"
    classes.write_text("editions:\n  - edition: X\n    in_force_from: 2020-01-01\n"
                       "    requirements:\n      - {energy_type: water, level: top,\n"
                       "         class: '1', confirmed: true}\n", encoding="utf-8")
    with pytest.raises(SourceErrors) as exc:
        load_classes(classes)
    assert f"{classes}:5: editions[0].requirements[0].level" in str(exc.value)


def test_shipped_data_marks_what_is_unconfirmed() -> None:
    rules = {(t, i): r for t, ty in PERIODS.types.items() for i, r in enumerate(ty.rules)}
    assert all(r.confirmed for (t, _), r in rules.items() if t == "water_meter")
    assert not any(r.confirmed for (t, _), r in rules.items() if t != "water_meter")
    assert not any(r.confirmed for e in CLASSES.editions for r in e.requirements)
    assert CLASSES.edition_at(D(2026, 2, 1)).edition == "GB 17167-2025"  # type: ignore[union-attr]
    assert CLASSES.edition_at(D(2026, 1, 31)).edition == "GB 17167-2006"  # type: ignore[union-attr]


def test_chain_records_work_as_records(register: Register) -> None:
    from calibration.chain import Records

    chain = Records.of(register.instruments.values(),
                       [c for cs in register.certificates.values() for c in cs])
    assert status(chain, "lab-dmm", AT) == status(register, "lab-dmm", AT)
    # chain records hold no verification records
    assert status(chain, "due-today", AT).state == "never_verified"


def test_a_calibrated_instruments_status_follows_its_recall_interval() -> None:
    meter = inst("cal-1", mandatory_verification=False, recall_interval_days=100)
    c = cert("cal-1", D(2026, 1, 1), D(2027, 1, 1))
    reg = Register.of([meter], [c], [])
    st = status(reg, "cal-1", D(2026, 5, 1), 30)  # the certificate says 2027-01-01
    assert (st.state, st.due) == ("calibration_expired", D(2026, 4, 11))
