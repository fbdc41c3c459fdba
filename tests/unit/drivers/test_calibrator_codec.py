"""The multifunction-calibrator source dialect: commands built, replies parsed (no I/O)."""

from __future__ import annotations

import math

import pytest

from drivers.text import calibrator
from drivers.text.codec import RangeReportedError, TextProtocolError


def test_commands_and_replies() -> None:
    assert calibrator.set_voltage_command(10.0) == "SOUR:VOLT 10"
    assert calibrator.set_voltage_command(-0.0012345) == "SOUR:VOLT -0.0012345"
    assert calibrator.parse_setting("+1.00000000E+01") == 10.0
    assert calibrator.format_setting(-2.5) == "-2.50000000E+00"
    assert calibrator.parse_state("1") is True
    assert calibrator.parse_state("OFF") is False
    assert calibrator.format_state(True) == "1"
    calibrator.parse_opc("1\r")


@pytest.mark.parametrize("bad", ["", "2", "yes"])
def test_bad_state_and_opc_replies(bad: str) -> None:
    with pytest.raises(TextProtocolError):
        calibrator.parse_state(bad)
    with pytest.raises(TextProtocolError):
        calibrator.parse_opc(bad)


def test_bad_settings() -> None:
    with pytest.raises(TextProtocolError):
        calibrator.set_voltage_command(math.nan)
    with pytest.raises(RangeReportedError):
        calibrator.parse_setting("+9.9E37")
