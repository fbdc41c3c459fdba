"""Golden replies for the text-instrument dialects, and the line decoder."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from daq.model import Quality
from drivers.text import mtsics, prt, scpi
from drivers.text.codec import (
    InstrumentReportedError,
    InvalidReading,
    LineDecoder,
    RangeReportedError,
    TextProtocolError,
    encode_line,
)
from drivers.text.generic import GenericTextProfile, parse_generic_reply

# -- line decoder ------------------------------------------------------------------------


@pytest.mark.parametrize("term", [b"\r\n", b"\n", b"\r"])
def test_lines_byte_by_byte(term: bytes) -> None:
    stream = b"one" + term + b"two" + term + term + b"three"
    dec = LineDecoder(term)
    out: list[str] = []
    for i in range(len(stream)):
        out += dec.feed(stream[i : i + 1])
    assert out == ["one", "two", ""]
    assert dec.pending == len(b"three")
    assert LineDecoder(term).feed(stream) == out


def test_garbage_becomes_replacement_characters_and_decoder_resyncs() -> None:
    dec = LineDecoder(b"\r\n")
    assert dec.feed(b"\xff\xfe\x00junk\r\nS S 1.00 g\r\n") == ["\ufffd\ufffd\x00junk",
                                                            "S S 1.00 g"]


def test_overlong_line_dropped_and_counted() -> None:
    dec = LineDecoder(b"\n", max_line=8)
    assert dec.feed(b"123456789012345") == []
    assert dec.feed(b"67\nok\n") == ["ok"]
    assert dec.overlong == 1
    assert dec.discarded == len(b"12345678901234567\n")
    whole = LineDecoder(b"\n", max_line=8)
    assert whole.feed(b"12345678\n123456789\nok\n") == ["12345678", "ok"]


def test_crlf_split_across_overlong_boundary() -> None:
    dec = LineDecoder(b"\r\n", max_line=4)
    assert dec.feed(b"abcdef\r") == []
    assert dec.feed(b"\nxy\r\n") == ["xy"]


def test_reset_forgets_partial_line() -> None:
    dec = LineDecoder(b"\n")
    dec.feed(b"half")
    dec.reset()
    assert dec.feed(b"full\n") == ["full"]


def test_decoder_arguments() -> None:
    with pytest.raises(ValueError):
        LineDecoder(b";")
    with pytest.raises(ValueError):
        LineDecoder(max_line=0)


def test_encode_line() -> None:
    assert encode_line("*IDN?", b"\n") == b"*IDN?\n"
    assert encode_line("SI") == b"SI\r\n"
    for bad in ("a\nb", "Ω"):
        with pytest.raises(TextProtocolError):
            encode_line(bad)
    with pytest.raises(TextProtocolError):
        encode_line("x", b";")


# -- SCPI --------------------------------------------------------------------------------


def test_scpi_commands() -> None:
    assert scpi.configure_command("VOLT:DC", 10) == "CONF:VOLT:DC 10"
    assert scpi.configure_command(scpi.DmmFunction.RES, 1000.0) == "CONF:RES 1000"
    assert scpi.configure_command("RES") == "CONF:RES AUTO"
    assert scpi.measure_command("VOLT:DC") == "MEAS:VOLT:DC?"
    assert scpi.measure_command(scpi.DmmFunction.RES) == "MEAS:RES?"
    with pytest.raises(ValueError):
        scpi.configure_command("CURR:AC")
    with pytest.raises(TextProtocolError):
        scpi.configure_command("RES", "10; *RST")


def test_scpi_idn() -> None:
    idn = scpi.parse_idn("KEITHLEY INSTRUMENTS,MODEL DMM6500,04412345,1.7.12b\n")
    assert idn == scpi.Identity("KEITHLEY INSTRUMENTS", "MODEL DMM6500", "04412345", "1.7.12b")
    assert scpi.parse_idn(scpi.format_idn(idn)) == idn
    for bad in ("", "A,B,C", "A,B,C,D,E", ",B,C,D"):
        with pytest.raises(TextProtocolError):
            scpi.parse_idn(bad)


@pytest.mark.parametrize(("line", "value"), [
    ("+1.00023000E+01", 10.0023),
    ("-4.5E-3", -0.0045),
    ("+0", 0.0),
    ("12.5", 12.5),
    (" +1.38505500E+02\r", 138.5055),
])
def test_scpi_reading(line: str, value: float) -> None:
    assert scpi.parse_reading(line) == value


def test_scpi_reading_format_round_trip() -> None:
    assert scpi.format_reading(10.0023) == "+1.00023000E+01"
    assert scpi.parse_reading(scpi.format_reading(-0.00012345)) == -0.00012345


@pytest.mark.parametrize(("line", "direction"), [("+9.9E37", "over"),
                                                 ("+9.90000000E+37", "over"),
                                                 ("-9.9E37", "under")])
def test_scpi_overload(line: str, direction: str) -> None:
    with pytest.raises(RangeReportedError) as info:
        scpi.parse_reading(line)
    assert info.value.direction == direction


def test_scpi_nan() -> None:
    with pytest.raises(InvalidReading):
        scpi.parse_reading("+9.91000000E+37")


@pytest.mark.parametrize("line", ["", "abc", "1.0V", "nan", "inf", "1,2", "--1", "\ufffd"])
def test_scpi_not_a_reading(line: str) -> None:
    with pytest.raises(TextProtocolError) as info:
        scpi.parse_reading(line)
    assert not isinstance(info.value, InstrumentReportedError)


def test_scpi_error_queue() -> None:
    assert scpi.parse_error('-113,"Undefined header"') == (-113, "Undefined header")
    assert scpi.parse_error('+0,"No error"') == (0, "No error")
    assert scpi.parse_error(scpi.format_error(-222, "Data out of range")) == (
        -222, "Data out of range")
    for bad in ("-113", '"x"', "-113,Undefined", ""):
        with pytest.raises(TextProtocolError):
            scpi.parse_error(bad)


# -- PRT ---------------------------------------------------------------------------------


def test_prt_replies() -> None:
    assert prt.parse_resistance("+1.38505500E+02") == 138.5055
    assert prt.parse_resistance(prt.format_resistance(60.2558)) == 60.2558
    with pytest.raises(TextProtocolError):
        prt.parse_resistance("-1.0E+00")
    with pytest.raises(RangeReportedError):
        prt.parse_resistance("+9.9E37")


# -- MT-SICS -----------------------------------------------------------------------------


def test_mtsics_stable_and_dynamic() -> None:
    stable = mtsics.parse_weight_reply("S S      100.00 g")
    assert (stable.value, stable.unit, stable.stable, stable.quality) == (
        100.0, "g", True, Quality.GOOD)
    dynamic = mtsics.parse_weight_reply("S D      100.01 g\r")
    assert (dynamic.value, dynamic.stable, dynamic.quality) == (100.01, False,
                                                                Quality.UNCERTAIN)
    assert mtsics.parse_weight_reply("S S     -0.0012 kg").value == -0.0012
    assert mtsics.format_weight(100.0, "g", True, 2) == "S S     100.00 g"
    assert mtsics.parse_weight_reply(mtsics.format_weight(-3.5, "mg", False, 1)).value == -3.5


@pytest.mark.parametrize(("line", "code"), [("S I", "S I"), ("ES", "ES"), ("EL", "EL"),
                                            ("ET", "ET")])
def test_mtsics_instrument_errors(line: str, code: str) -> None:
    with pytest.raises(InstrumentReportedError) as info:
        mtsics.parse_weight_reply(line)
    assert info.value.code == code
    assert not isinstance(info.value, RangeReportedError)


@pytest.mark.parametrize(("line", "direction"), [("S +", "over"), ("S -", "under")])
def test_mtsics_range(line: str, direction: str) -> None:
    with pytest.raises(RangeReportedError) as info:
        mtsics.parse_weight_reply(line)
    assert info.value.direction == direction


@pytest.mark.parametrize("line", ["", "S", "S S", "S S abc g", "S X 1.0 g", "SS 1 g", "E"])
def test_mtsics_malformed(line: str) -> None:
    with pytest.raises(TextProtocolError) as info:
        mtsics.parse_weight_reply(line)
    assert not isinstance(info.value, InstrumentReportedError)


# -- generic -----------------------------------------------------------------------------


def _profile(**kw: object) -> GenericTextProfile:
    base: dict[str, object] = {
        "command": "R?", "terminator": "\n",
        "reply_regex": r"T=(?P<value>[+-]?\d+\.\d+)\s*(?P<unit>\S+)",
        "unit": "degC", "quantity": "temperature",
    }
    base.update(kw)
    return GenericTextProfile.model_validate(base)


def test_generic_parse_and_scale() -> None:
    p = _profile(scale=2.0, offset=-1.0)
    r = parse_generic_reply(p, "T=21.50 degC")
    assert (r.raw, r.value, r.unit, r.quantity) == (21.5, 42.0, "degC", "temperature")
    assert p.request() == b"R?\n"


def test_generic_errors() -> None:
    p = _profile(error_regex=r"ERR (?P<code>\d+)")
    with pytest.raises(InstrumentReportedError) as info:
        parse_generic_reply(p, "ERR 7")
    assert info.value.code == "7"
    with pytest.raises(TextProtocolError):
        parse_generic_reply(p, "T=21.50 K")  # wrong unit
    with pytest.raises(TextProtocolError):
        parse_generic_reply(p, "hello")


@pytest.mark.parametrize("bad", [{"reply_regex": r"(\d+)"}, {"reply_regex": "("},
                                 {"extra": 1}, {"terminator": ";"}, {"command": "a\nb"},
                                 {"scale": float("nan")}])
def test_generic_profile_validation(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _profile(**bad)
