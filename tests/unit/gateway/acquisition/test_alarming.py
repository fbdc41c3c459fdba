"""The alarm supervisor: communication alarms from device health, stuck / out-of-range
alarms from reading flags with a hold before clearing, and one state message at start."""

from __future__ import annotations

from daq.alarms import AlarmKind, decode_alarms
from daq.model import Quality, Reading, Reason
from gateway.acquisition.alarming import AlarmSupervisor
from gateway.acquisition.poller import DeviceState

T = 1_780_000_000 * 10**9  # polls at T + n ns (the alarms decoder refuses a clock never set)


def poll(*reasons: str | None) -> list[Reading]:
    return [Reading(1, "e", "g", "m", f"c{i}", "voltage", "V", 1.0, 1.0,
                    Quality.UNCERTAIN if r else Quality.GOOD, r)
            for i, r in enumerate(reasons)]


def test_state_goes_out_once_at_start_then_only_on_change() -> None:
    sup = AlarmSupervisor("e", "g", ["m"])
    first = sup.observe("m", DeviceState(), poll(None), T + 1)
    assert first is not None
    topic, payload = first.topic, first.payload
    assert topic == "daq/e/g/m/alarms"
    assert decode_alarms(payload).alarms == ()
    assert sup.observe("m", DeviceState(), poll(None), T + 2) is None


def test_communication_alarm_follows_degradation() -> None:
    sup = AlarmSupervisor("e", "g", ["m"])
    sup.observe("m", DeviceState(), poll(None), T + 1)
    sick = DeviceState(consecutive_failures=3, degraded=True, last_error="no answer",
                       last_reason="timeout")
    msg = sup.observe("m", sick, poll(None), T + 2)
    assert msg is not None
    (alarm,) = decode_alarms(msg[1]).alarms
    assert (alarm.kind, alarm.reason, alarm.since_ns) == (AlarmKind.COMMUNICATION,
                                                         "timeout: no answer", T + 2)
    assert sup.observe("m", sick, poll(None), T + 3) is None  # unchanged: nothing new
    msg = sup.observe("m", DeviceState(), poll(None), T + 4)
    assert msg is not None
    state = decode_alarms(msg[1])
    assert state.alarms == ()
    assert [(e.action, e.ts_ns) for e in state.events] == [("cleared", T + 4)]


def test_reading_flags_raise_at_once_and_clear_after_three_clean_polls() -> None:
    sup = AlarmSupervisor("e", "g", ["m"], clear_after=3)
    sup.observe("m", DeviceState(), poll(None, None), T + 1)
    msg = sup.observe("m", DeviceState(), poll(Reason.OUT_OF_RANGE, Reason.STUCK), T + 2)
    assert msg is not None
    assert {a.key for a in decode_alarms(msg[1]).alarms} == {"out_of_range:c0", "stuck"}
    assert sup.observe("m", DeviceState(), poll(None, None), T + 3) is None  # held
    assert sup.observe("m", DeviceState(), poll(Reason.OUT_OF_RANGE, None), T + 4) is None
    msg = sup.observe("m", DeviceState(), poll(None, None), T + 5)  # stuck: 3rd clean poll
    assert msg is not None
    assert [(e.action, e.alarm.key) for e in decode_alarms(msg[1]).events] == [
        ("cleared", "stuck")]
    assert sup.observe("m", DeviceState(), poll(None, None), T + 6) is None
    msg = sup.observe("m", DeviceState(), poll(None, None), T + 7)  # out_of_range: 3rd since 4
    assert msg is not None
    assert decode_alarms(msg[1]).alarms == ()
