"""The dashboard's live state: device status and verification derived from readings, status
and alarms; coalesced deltas; alarm instance ids. Pure, no services."""

from __future__ import annotations

import pytest

from daq.alarms import Alarm, AlarmKind, AlarmState
from daq.model import Quality, Reading
from gateway.dashboard.state import LiveState, alarm_id, parse_alarm_id, verification_of

NS = 1_000_000_000
T = 1_800_000_000 * NS


def reading(ch: str = "p", quality: Quality = Quality.GOOD, verification: str | None = None,
            dev: str = "m1") -> Reading:
    return Reading(ts_ns=T, enterprise="e", gateway="g", device=dev, channel=ch,
                   quantity="active_power", unit="W",
                   value=None if quality is Quality.BAD else 1.0, quality=quality,
                   reason="timeout" if quality is Quality.BAD else None,
                   verification=verification)


def test_device_online_faulty_offline() -> None:
    st = LiveState(stale_s=30)
    st.apply_status("e", "g", "online", T)
    st.apply_readings([reading()], T)
    assert st.devices["e/g/m1"].status == "online"
    st.apply_readings([reading(quality=Quality.BAD)], T + NS)
    assert st.devices["e/g/m1"].status == "faulty"
    st.apply_readings([reading()], T + 2 * NS)
    st.tick(T + 40 * NS)  # nothing for longer than stale_s
    assert st.devices["e/g/m1"].status == "offline"
    st.apply_readings([reading()], T + 41 * NS)
    st.apply_status("e", "g", "offline", T + 42 * NS)  # the gateway's will
    assert st.devices["e/g/m1"].status == "offline"


def test_a_communication_alarm_makes_a_device_faulty() -> None:
    st = LiveState()
    st.apply_readings([reading()], T)
    a = Alarm(AlarmKind.COMMUNICATION, T, "no answer")
    st.apply_alarms(AlarmState("e", "g", "m1", T, (a,)), T)
    assert st.devices["e/g/m1"].status == "faulty"
    st.apply_alarms(AlarmState("e", "g", "m1", T, ()), T)
    assert st.devices["e/g/m1"].status == "online"


@pytest.mark.parametrize(("mark", "want"), [(None, "valid"), ("due_soon", "due_soon"),
                                            ("overdue", "overdue"), ("never_verified", "overdue"),
                                            ("service_life_ended", "overdue")])
def test_verification_marks(mark: str | None, want: str) -> None:
    assert verification_of(mark) == want
    st = LiveState()
    st.apply_readings([reading("a"), reading("b", verification=mark)], T)
    assert st.devices["e/g/m1"].verification == want


def test_verification_alarms_count_like_reading_marks() -> None:
    st = LiveState()
    st.apply_readings([reading()], T)
    soon = Alarm(AlarmKind.VERIFICATION_DUE_SOON, T, "due in 20 days")
    st.apply_alarms(AlarmState("e", "g", "m1", T, (soon,)), T)
    assert st.devices["e/g/m1"].verification == "due_soon"
    over = Alarm(AlarmKind.VERIFICATION_OVERDUE, T, "overdue since 3 days")
    st.apply_alarms(AlarmState("e", "g", "m1", T, (soon, over)), T)
    assert st.devices["e/g/m1"].verification == "overdue"


def test_deltas_coalesce_and_carry_acks() -> None:
    st = LiveState()
    for i in range(10):
        st.apply_readings([reading("p"), reading("q")], T + i)
    delta = st.take_delta()
    assert sorted(c["channel"] for c in delta.channels) == ["p", "q"]  # latest only, once
    assert delta.channels[0]["ts"] == T
    assert not st.take_delta()
    a = Alarm(AlarmKind.DRIFT, T, "drift", channel="p")
    st.apply_alarms(AlarmState("e", "g", "m1", T, (a,)), T)
    [alarm] = st.devices["e/g/m1"].alarms
    assert alarm["ack"] is None
    assert parse_alarm_id(alarm["id"]) == ("e/g/m1", "drift:p", T)
    st.take_delta()
    st.apply_ack("e/g/m1", "drift:p", T, {"who": "Li Lei", "at": T + NS, "note": ""})
    delta = st.take_delta()
    assert delta.devices[0]["alarms"][0]["ack"]["who"] == "Li Lei"


def test_alarm_ids_round_trip_and_refuse_garbage() -> None:
    assert parse_alarm_id(alarm_id("e/g/d", "drift:ch", 123)) == ("e/g/d", "drift:ch", 123)
    for bad in ("nonsense", "e/g|k|1", "e/g/d||1", "e/g/d|k|x"):
        with pytest.raises(ValueError):
            parse_alarm_id(bad)
