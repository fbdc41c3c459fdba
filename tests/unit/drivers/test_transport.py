"""Serial line timing against FACTS.md's Modbus RTU wire-time table."""

from __future__ import annotations

import pytest

from drivers.transport import SerialSettings


def test_bits_per_character() -> None:
    assert SerialSettings("x", 9600, parity="E").bits_per_char == 11  # 8E1
    assert SerialSettings("x", 9600, parity="N", stopbits=2).bits_per_char == 11  # 8N2
    assert SerialSettings("x", 9600, parity="N").bits_per_char == 10  # 8N1
    assert SerialSettings("x", 9600, bytesize=7, parity="O", stopbits=2).bits_per_char == 11


def test_char_time_and_silence_at_9600_8e1() -> None:
    line = SerialSettings("x", 9600, parity="E")
    assert line.char_time_s() == pytest.approx(11 / 9600)
    assert line.modbus_silence_s() == pytest.approx(3.5 * 11 / 9600)  # ≈ 4.01 ms


@pytest.mark.parametrize("baud", [19200 + 1, 38400, 115200])
def test_silence_is_fixed_above_19200(baud: int) -> None:
    assert SerialSettings("x", baud).modbus_silence_s() == 1.75e-3


def test_silence_at_19200_still_scales() -> None:
    assert SerialSettings("x", 19200).modbus_silence_s() == pytest.approx(3.5 * 11 / 19200)


def transaction_s(line: SerialSettings, request: int, reply: int) -> float:
    """Wire time of one transaction: both frames, each followed by the silence."""
    return line.wire_time_s(request + reply) + 2 * line.modbus_silence_s()


@pytest.mark.parametrize(
    ("baud", "seconds", "per_second"),
    [(9600, 27.5e-3, 36), (115200, 5.1e-3, 195)],  # FACTS.md: 2 registers, 8 + 9 bytes
)
def test_two_register_transaction_matches_facts(baud: int, seconds: float, per_second: int) -> None:
    t = transaction_s(SerialSettings("x", baud, parity="E"), 8, 9)
    assert t == pytest.approx(seconds, abs=0.05e-3)
    assert int(1 / t) == per_second


@pytest.mark.parametrize(
    "kwargs",
    [{"baudrate": 0}, {"bytesize": 9}, {"parity": "X"}, {"stopbits": 3}],
)
def test_invalid_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SerialSettings("x", **kwargs)  # type: ignore[arg-type]
