"""The gateway's calibration stage against a real registry file: corrections, flags, reload
without restart, alarms, and a registry changed behind the tool's back."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path

import pytest

from calibration.apply import calibration_of
from calibration.chain import Records
from calibration.registry import Registry, sha256_text
from daq.alarms import AlarmKind
from daq.model import Quality, Reading, Reason
from gateway.acquisition.calibration_stage import CalibrationStage
from simulators.instruments import InstrumentModel
from simulators.lab import calibrate, chain

TODAY = dt.datetime.now(dt.UTC).date()
# the simulated DMM's repeatability, stated in its record (else: repeatability_unknown)
STATED = {"dmm-a": {"repeatability": 2e-5}}


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


def reading(value: float | None, channel: str = "dcv", device: str = "dmm") -> Reading:
    if value is None:
        return Reading(time.time_ns(), "e", "g", device, channel, "voltage", "V", None,
                       quality=Quality.BAD, reason=Reason.TIMEOUT)
    return Reading(time.time_ns(), "e", "g", device, channel, "voltage", "V", value, value)


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    sim = InstrumentModel(0.0, "V", offset=2e-3, gain=-1e-4, noise=2e-5, decimals=6, seed=1)
    rs = chain(TODAY, {"dmm-a": calibrate(sim)}, working_days_ago=10, instrument_extra=STATED)
    path = tmp_path / "registry.sqlite"
    with Registry(path) as reg:
        reg.import_records(rs, "tester", "set up")
    return path


def stage(path: Path, clock: Clock, **channels: str) -> CalibrationStage:
    return CalibrationStage(path, {"dmm": channels or {"dcv": "dmm-a"}}, reload_s=5,
                            clock=clock)


def test_readings_are_corrected_with_u_k_and_certificate(registry: Path) -> None:
    st = stage(registry, Clock())
    with Registry(registry) as reg:
        records = Records.of(reg.list("instrument"), reg.list("certificate"))  # type: ignore[arg-type]
    expected = calibration_of(records, "dmm-a", TODAY).correct(5.0, 10)
    rs = [reading(5.0), reading(None), reading(5.0, channel="other")]
    st.apply(rs)
    good, bad, other = rs
    assert good.quality is Quality.GOOD
    assert good.value == pytest.approx(float(expected.value), abs=1e-15)
    assert good.value != 5.0
    assert good.u == pytest.approx(float(expected.u))
    assert good.k == pytest.approx(float(expected.k))  # t at ν_eff (the fit's ν = 5 dominates)
    assert good.cert == "LAB-dmm-a"
    expanded = good.U
    assert expanded == good.u * good.k  # type: ignore[operator]
    assert (bad.quality, bad.reason, bad.cert) == (Quality.BAD, "timeout", None)
    assert (other.value, other.cert) == (5.0, None)  # not mapped: untouched
    assert st.alarms("dmm", 1) == []


def test_an_unstated_repeatability_is_flagged_not_silently_zero(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sim = InstrumentModel(0.0, "V", offset=2e-3, noise=2e-5, decimals=6, seed=1)
    path = tmp_path / "r.sqlite"
    with Registry(path) as reg:  # neither the record nor the lab's certificate states one
        reg.import_records(chain(TODAY, {"dmm-a": calibrate(sim)}, working_days_ago=10),
                           "tester", "set up")
    st = stage(path, Clock())
    r, outside = reading(5.0), reading(10.9)
    st.apply([r, outside])
    assert (r.quality, r.reason, r.cert) == (Quality.UNCERTAIN, "repeatability_unknown",
                                             "LAB-dmm-a")
    assert r.value != 5.0
    assert r.u is not None
    assert r.k is not None  # usable: corrected, with u and k
    assert outside.reason == "outside_calibrated_range"  # no u stated: nothing to flag
    assert "states a repeatability" in caplog.text
    assert st.alarms("dmm", 1) == []
    # a certificate that records what its calibration observed (as a session's does)
    with Registry(path) as reg:
        cert = next(c for c in reg.list("certificate") if c.id == "LAB-dmm-a")
        reg.put(cert.model_copy(update={"repeatability": 2e-5, "repeatability_dof": 63.0}),
                "tester", "repeatability observed")
    st.refresh(force=True)
    again = reading(5.0)
    st.apply([again])
    assert (again.quality, again.reason) == (Quality.GOOD, None)
    assert again.u is not None
    assert again.u > r.u


def test_outside_range_is_kept_uncorrected_and_flagged(registry: Path) -> None:
    st = stage(registry, Clock())
    r = reading(10.9)
    st.apply([r])
    assert (r.value, r.u, r.cert) == (10.9, None, None)
    assert (r.quality, r.reason) == (Quality.UNCERTAIN, Reason.OUTSIDE_CALIBRATED_RANGE)


def test_unknown_instrument_and_missing_registry_flag_not_calibrated(
        registry: Path, tmp_path: Path) -> None:
    st = stage(registry, Clock(), dcv="nobody")
    r = reading(1.0)
    st.apply([r])
    assert (r.value, r.quality, r.reason) == (1.0, Quality.UNCERTAIN, Reason.NOT_CALIBRATED)
    (alarm,) = st.alarms("dmm", 7)
    assert alarm.kind == AlarmKind.CHAIN_BROKEN
    assert "nobody" in alarm.reason
    assert alarm.channel == "dcv"
    missing = stage(tmp_path / "none.sqlite", Clock())
    r = reading(1.0)
    missing.apply([r])
    assert r.reason == Reason.NOT_CALIBRATED


def test_a_new_certificate_is_picked_up_without_restart(registry: Path) -> None:
    clock = Clock()
    st = stage(registry, clock)
    first = reading(5.0)
    st.apply([first])
    with Registry(registry) as reg:
        old = reg.get("certificate", "LAB-dmm-a")
        assert old is not None
        data = old.model_dump(mode="json", by_alias=True)
        data["model"] = {**data["model"], "c0": data["model"]["c0"] + 1e-3}
        reg.put(type(old).model_validate(data), "tester", "recalibrated")
    clock.t += 1  # within reload_s: the cached calibration still applies
    same = reading(5.0)
    st.apply([same])
    assert same.value == first.value
    clock.t += 5
    after = reading(5.0)
    st.apply([after])
    assert after.value == pytest.approx(first.value + 1e-3, abs=1e-12)  # type: ignore[operator]
    assert st.rebuilds == 2


def test_expired_certificate_is_applied_but_flagged_and_alarmed(tmp_path: Path) -> None:
    sim = InstrumentModel(0.0, "V", offset=2e-3, noise=2e-5, decimals=6)
    rs = chain(TODAY, {"dmm-a": calibrate(sim)}, working_days_ago=400, instrument_extra=STATED)
    path = tmp_path / "r.sqlite"
    with Registry(path) as reg:
        reg.import_records(rs, "tester", "set up")
    st = stage(path, Clock())
    r = reading(5.0)
    st.apply([r])
    assert r.cert == "LAB-dmm-a"
    assert (r.quality, r.reason) == (Quality.UNCERTAIN, Reason.CALIBRATION_EXPIRED)
    (alarm,) = st.alarms("dmm", 7)
    assert alarm.kind == AlarmKind.CALIBRATION_EXPIRED
    assert alarm.details["certificate"] == "LAB-dmm-a"


def test_a_registry_edited_behind_its_back_is_not_trusted(registry: Path) -> None:
    conn = sqlite3.connect(registry)
    with conn:
        conn.execute("UPDATE certificates SET json = replace(json, '\"interval_days\":365', "
                     "'\"interval_days\":3650') WHERE id = 'LAB-dmm-a'")
        conn.execute("INSERT INTO audit (seq, at, who, action, kind, record_id, why, "
                     "record_sha256, prev_sha256, entry_sha256) SELECT seq + 1000, at, who, "
                     "action, kind, record_id, why, record_sha256, prev_sha256, entry_sha256 "
                     "FROM audit WHERE seq = 1")  # changes the head, so the stage reloads
    conn.close()
    st = stage(registry, Clock())
    r = reading(5.0)
    st.apply([r])
    assert (r.value, r.cert, r.reason) == (5.0, None, Reason.NOT_CALIBRATED)
    (alarm,) = st.alarms("dmm", 7)
    assert "audit" in alarm.reason


def meter(id_: str, plan: dict[str, object]) -> dict[str, object]:
    return {"id": id_, "maker": "m", "model": "water", "serial": id_, "quantity": "volume",
            "unit": "m3", "range": {"min": 0.0, "max": 1e5}, "resolution": 0.001,
            "accuracy": {"class": "2"}, "owner": "plant", "location": "gate",
            "role": "working", "mandatory_verification": True, "verification": plan}


def test_verification_states_flag_readings_and_raise_alarms(tmp_path: Path) -> None:
    from calibration.records import RecordSet

    def ver(inst: str, days_ago: int, due_in: int) -> dict[str, object]:
        return {"instrument": inst, "date": (TODAY - dt.timedelta(days=days_ago)).isoformat(),
                "result": "pass", "authority": "a", "record_number": f"V-{inst}",
                "next_due": (TODAY + dt.timedelta(days=due_in)).isoformat()}

    rs = RecordSet.model_validate({
        "instruments": [
            meter("old-water", {"mode": "first_only", "service_life_years": 6,
                                "installed": (TODAY - dt.timedelta(days=7 * 366)).isoformat()}),
            meter("soon", {"mode": "periodic", "period_months": 24})],
        "verifications": [ver("old-water", 7 * 366, 1), ver("soon", 700, 10)]})
    path = tmp_path / "r.sqlite"
    with Registry(path) as reg:
        reg.import_records(rs, "tester", "set up")
    st = CalibrationStage(path, {}, {"w": "old-water", "s": "soon"}, clock=Clock())
    w, s = reading(3.0, device="w"), reading(4.0, device="s")
    bad = reading(None, device="w")
    st.apply([w, bad])
    st.apply([s])
    assert (w.verification, w.quality, w.reason) == (
        "service_life_ended", Quality.UNCERTAIN, Reason.SERVICE_LIFE_ENDED)
    assert (bad.verification, bad.quality, bad.reason) == (
        "service_life_ended", Quality.BAD, "timeout")  # tagged, its own reason kept
    assert (s.verification, s.quality) == (None, Quality.GOOD)  # due soon: alarm only
    (aw,) = st.alarms("w", 7)
    assert (aw.kind, aw.severity, aw.channel) == (AlarmKind.SERVICE_LIFE_ENDED, "critical", None)
    (a_s,) = st.alarms("s", 7)
    assert (a_s.kind, a_s.severity) == (AlarmKind.VERIFICATION_DUE_SOON, "info")
    assert a_s.details["days_left"] == 10
    window_opened = TODAY + dt.timedelta(days=10 - 30)
    assert a_s.since_ns == int(dt.datetime(window_opened.year, window_opened.month,
                                           window_opened.day, tzinfo=dt.UTC).timestamp()) * 10**9


def test_a_corrupt_registry_keeps_the_last_good_records_and_dates_them(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sim = InstrumentModel(0.0, "V", offset=2e-3, noise=2e-5, decimals=6, seed=1)
    path = tmp_path / "r.sqlite"
    with Registry(path) as reg:  # the working certificate expires in 10 days
        reg.import_records(chain(TODAY, {"dmm-a": calibrate(sim)}, working_days_ago=10,
                                 working_interval_days=20, instrument_extra=STATED),
                           "tester", "set up")
    clock = Clock()
    st = stage(path, clock)
    good = reading(5.0)
    st.apply([good])
    assert (good.cert, good.quality) == ("LAB-dmm-a", Quality.GOOD)
    path.write_bytes(b"not a database " * 512)  # overwritten under the stage's connection
    for _ in range(2):
        clock.t += 5
        same = reading(5.0)
        st.apply([same])
        assert (same.value, same.cert, same.quality) == (good.value, "LAB-dmm-a", Quality.GOOD)
    assert len([r for r in caplog.records if "unreadable" in r.message]) == 1  # logged once
    clock.t += 11 * 86400  # a new date: the last good records, checked on it
    later = reading(5.0)
    st.apply([later])
    assert (later.value, later.cert) == (good.value, "LAB-dmm-a")
    assert (later.quality, later.reason) == (Quality.UNCERTAIN, Reason.CALIBRATION_EXPIRED)


def test_a_locked_registry_keeps_the_last_good_records_without_stalling(
        registry: Path) -> None:
    clock = Clock()
    st = stage(registry, clock)
    first = reading(5.0)
    st.apply([first])
    locker = sqlite3.connect(registry, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # a writer holds the file
        clock.t += 5
        same = reading(5.0)
        started = time.monotonic()
        st.apply([same])
        assert time.monotonic() - started < 1.0  # busy_timeout_s, not sqlite3's 5 s
        assert (same.value, same.cert, same.quality) == (first.value, "LAB-dmm-a", Quality.GOOD)
    finally:
        locker.close()
    with Registry(registry) as reg:
        old = reg.get("certificate", "LAB-dmm-a")
        assert old is not None
        data = old.model_dump(mode="json", by_alias=True)
        data["model"] = {**data["model"], "c0": data["model"]["c0"] + 1e-3}
        reg.put(type(old).model_validate(data), "tester", "recalibrated")
    clock.t += 5  # readable again: the new certificate is picked up
    after = reading(5.0)
    st.apply([after])
    assert after.value == pytest.approx(first.value + 1e-3, abs=1e-12)  # type: ignore[operator]


def test_a_record_that_does_not_parse_keeps_the_last_good_records(registry: Path) -> None:
    """The head can be read but a record cannot (rewritten with a consistent audit entry, so
    the log checks): the rebuild fails and the last good records stay in use."""
    clock = Clock()
    st = stage(registry, clock)
    first = reading(5.0)
    st.apply([first])
    # what only someone who rebuilds the audit chain can do, through the registry's internals
    with Registry(registry) as reg, reg._transaction() as conn:
        conn.execute("UPDATE certificates SET json = '{broken' WHERE id = 'LAB-dmm-a'")
        reg._append("tester", "update", "certificate", "LAB-dmm-a", "broken",
                    sha256_text("{broken"))
    with Registry(registry) as reg:
        assert reg.verify() == []
    clock.t += 5
    same = reading(5.0)
    st.apply([same])
    assert (same.value, same.cert, same.quality) == (first.value, "LAB-dmm-a", Quality.GOOD)


def test_a_reference_calibrated_after_its_use_breaks_the_chain(tmp_path: Path) -> None:
    # the working DMM calibrated 250 days ago against the reference certificate issued
    # 200 days ago: a certificate that did not exist yet when it was used
    sim = InstrumentModel(0.0, "V", offset=2e-3, noise=2e-5, decimals=6)
    rs = chain(TODAY, {"dmm-a": calibrate(sim)}, working_days_ago=250, instrument_extra=STATED)
    path = tmp_path / "r.sqlite"
    with Registry(path) as reg:
        reg.import_records(rs, "tester", "set up")
    st = stage(path, Clock())
    r = reading(5.0)
    st.apply([r])
    assert r.cert == "LAB-dmm-a"  # still corrected
    assert (r.quality, r.reason) == (Quality.UNCERTAIN, Reason.CHAIN_BROKEN)
    (alarm,) = st.alarms("dmm", 7)
    assert alarm.kind == AlarmKind.CHAIN_BROKEN
    assert "after its use" in alarm.reason
    assert alarm.details["reasons"] == ["reference_calibrated_after_use"]


def test_a_record_edited_behind_its_back_while_running_is_caught_at_the_next_reload(
        registry: Path) -> None:
    clock = Clock()
    st = stage(registry, clock)
    before = reading(5.0)
    st.apply([before])
    assert before.cert == "LAB-dmm-a"
    # an edit of a record alone, with no audit entry: the audit head does not change
    conn = sqlite3.connect(registry)
    with conn:
        conn.execute("UPDATE certificates SET json = replace(json, '\"interval_days\":365', "
                     "'\"interval_days\":3650') WHERE id = 'LAB-dmm-a'")
    conn.close()
    clock.t += 6
    after = reading(5.0)
    st.apply([after])
    assert (after.value, after.cert, after.reason) == (5.0, None, Reason.NOT_CALIBRATED)
    (alarm,) = st.alarms("dmm", 7)
    assert "changed behind the registry's back" in alarm.reason


def test_the_instruments_recall_interval_decides_calibration_expired(tmp_path: Path) -> None:
    # calibrated 100 days ago, the certificate recommends 365 days; the owner recalls the
    # DMM every 90 days
    sim = InstrumentModel(0.0, "V", offset=2e-3, noise=2e-5, decimals=6)
    extra = {"dmm-a": {**STATED["dmm-a"], "recall_interval_days": 90}}
    rs = chain(TODAY, {"dmm-a": calibrate(sim)}, working_days_ago=100, instrument_extra=extra)
    path = tmp_path / "r.sqlite"
    with Registry(path) as reg:
        reg.import_records(rs, "tester", "set up")
    st = stage(path, Clock())
    r = reading(5.0)
    st.apply([r])
    assert (r.quality, r.reason, r.cert) == (Quality.UNCERTAIN, Reason.CALIBRATION_EXPIRED,
                                             "LAB-dmm-a")
    (alarm,) = st.alarms("dmm", 7)
    assert alarm.details["expired"] == (TODAY - dt.timedelta(days=10)).isoformat()
