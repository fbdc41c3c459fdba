"""Line protocol for readings: golden lines, escaping, value types, exact floats."""

from __future__ import annotations

import math
import re
import struct

import pytest

from daq.model import Quality, Reading, Reason
from gateway.storage.lineproto import (
    escape_measurement,
    escape_string_field,
    escape_tag,
    split_value,
    to_body,
    to_line,
    to_lines,
)

TS = 1_700_000_000_123_456_789


def reading(**kw: object) -> Reading:
    base: dict[str, object] = {
        "ts_ns": TS, "enterprise": "acme", "gateway": "gw1", "device": "m1",
        "channel": "u_l1", "quantity": "voltage", "unit": "V", "value": 230.1,
    }
    base.update(kw)
    return Reading(**base)  # type: ignore[arg-type]


# -- golden lines ---------------------------------------------------------------------


def test_golden_good_float() -> None:
    assert to_line(reading(raw=2301)) == (
        "voltage,channel=u_l1,device=m1,enterprise=acme,gateway=gw1,unit=V "
        f'value=230.1,raw=2301.0,quality="good" {TS}'
    )


def test_golden_all_fields() -> None:
    r = reading(value=0.1, raw=1e-05, quality=Quality.UNCERTAIN, reason=Reason.OUT_OF_RANGE,
                u=0.002, k=2, cert='C "1"', verification="overdue")
    assert to_line(r) == (
        "voltage,channel=u_l1,device=m1,enterprise=acme,gateway=gw1,unit=V,verification=overdue "
        'value=0.1,raw=1e-05,quality="uncertain",reason="out_of_range",u_std=0.002,k=2.0,'
        'u_exp=0.004,'
        f'cert="C \\"1\\"" {TS}'
    )


def test_certificate_alone_leaves_the_fast_path() -> None:
    assert to_line(reading(value=1.5, cert="C-1")) == (
        "voltage,channel=u_l1,device=m1,enterprise=acme,gateway=gw1,unit=V "
        f'value=1.5,quality="good",cert="C-1" {TS}'
    )


def test_golden_bad_reading_has_no_value() -> None:
    r = reading(value=None, quality=Quality.BAD, reason=Reason.TIMEOUT)
    assert to_line(r) == (
        "voltage,channel=u_l1,device=m1,enterprise=acme,gateway=gw1,unit=V "
        f'quality="bad",reason="timeout" {TS}'
    )


def test_int_value_is_written_as_float() -> None:
    line = to_line(reading(value=42, raw=-7))
    assert " value=42.0,raw=-7.0," in line
    assert "42i" not in line


def test_bool_value_is_a_number() -> None:
    assert " value=1.0," in to_line(reading(value=True))


def test_string_value_goes_to_text() -> None:
    line = to_line(reading(quantity="status", unit="", value='on "auto"\\x', raw="ON"))
    assert line == (
        "status,channel=u_l1,device=m1,enterprise=acme,gateway=gw1 "
        f'text="on \\"auto\\"\\\\x",quality="good" {TS}'
    )


@pytest.mark.parametrize(("value", "text"), [(math.nan, "nan"), (math.inf, "inf"),
                                              (-math.inf, "-inf")])
def test_non_finite_value_goes_to_text(value: float, text: str) -> None:
    line = to_line(reading(value=value, raw=math.nan, u=math.inf))
    assert f' text="{text}",quality="good" ' in line
    assert "value=" not in line
    assert "raw=" not in line
    assert "u_std=" not in line


def test_empty_tags_are_left_out() -> None:
    line = to_line(reading(enterprise="", unit=""))
    assert line.startswith("voltage,channel=u_l1,device=m1,gateway=gw1 value=")


def test_empty_quantity_is_refused() -> None:
    with pytest.raises(ValueError):
        to_line(reading(quantity=""))


# -- escaping -------------------------------------------------------------------------


def test_escape_tag() -> None:
    assert escape_tag("a,b=c d") == r"a\,b\=c\ d"
    assert escape_tag("line1\nline2\r") == r"line1\ line2\ "
    assert escape_tag("C:\\dir\\") == "C:/dir/"  # backslashes cannot be written safely
    assert escape_tag("m³/h °C") == r"m³/h\ °C"


def test_escape_measurement_keeps_equals() -> None:
    assert escape_measurement("active power,total=x") == r"active\ power\,total=x"


def test_escape_string_field() -> None:
    assert escape_string_field('say "hi" \\ bye') == r'say \"hi\" \\ bye'
    assert escape_string_field("plain") == "plain"


def test_escaped_line_in_context() -> None:
    r = reading(quantity="active power", device="m 1", channel="p,l=1", unit="k W",
                reason='bad "x"', value=None, quality=Quality.BAD)
    assert to_line(r) == (
        r"active\ power,channel=p\,l\=1,device=m\ 1,enterprise=acme,gateway=gw1,unit=k\ W "
        f'quality="bad",reason="bad \\"x\\"" {TS}'
    )


def _split_line(line: str) -> list[str]:
    """Split a line at unescaped spaces outside quotes (a tiny line-protocol tokenizer)."""
    parts, cur, quoted, i = [], "", False, 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            cur += line[i:i + 2]
            i += 2
            continue
        if c == '"' and parts:  # quotes delimit strings only in the field section
            quoted = not quoted
        if c == " " and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    return parts


@pytest.mark.parametrize("nasty", ["a b", "a,b", "a=b", "a\\", "\\,", 'q"', "x\ny", " ", "é水"])
def test_any_tag_value_gives_three_sections(nasty: str) -> None:
    line = to_line(reading(device=nasty, channel=nasty, unit=nasty, reason=nasty,
                           value=None, quality=Quality.BAD))
    assert line.count("\n") == nasty.count("\n")  # only inside the quoted reason
    sections = _split_line(line)
    assert len(sections) == 3, sections
    assert sections[2] == str(TS)


# -- floats ---------------------------------------------------------------------------


def _float32(x: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", x))[0])


FLOATS = [0.1, 1 / 3, 230.1, -0.0, 1e-05, 1e20, 1.7976931348623157e308, 5e-324,
          2.0**53 + 2, 123456789.123456789]


@pytest.mark.parametrize("x", FLOATS + [_float32(x) for x in (0.1, 230.1, 49.99, 1e-7, 3.4e38)])
def test_floats_round_trip_exactly(x: float) -> None:
    line = to_line(reading(value=x, raw=x, u=abs(x), k=x))
    fields = dict(f.split("=", 1) for f in _split_line(line)[1].split(","))
    for key in ("value", "raw", "k"):
        parsed = float(fields[key])
        assert parsed == x
        assert math.copysign(1.0, parsed) == math.copysign(1.0, x)
    assert float(fields["u_std"]) == abs(x)


def test_float32_widened_keeps_its_float64_digits() -> None:
    x = _float32(230.1)  # 230.10000610351562 as float64
    assert f"value={x!r}," in to_line(reading(value=x))
    assert float(repr(x)) == x
    assert x != 230.1


def test_numbers_match_line_protocol_float_syntax() -> None:
    number = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")
    for x in FLOATS:
        assert number.match(repr(x)), x


def test_split_value() -> None:
    assert split_value(None) == (None, None)
    assert split_value(3) == (3.0, None)
    assert split_value("on") == (None, "on")
    assert split_value(math.inf) == (None, "inf")


# -- batches --------------------------------------------------------------------------


def test_to_lines_and_body() -> None:
    rs = [reading(ts_ns=TS + i, value=float(i)) for i in range(3)]
    lines = to_lines(rs)
    assert len(lines) == 3
    body = to_body(rs)
    assert body == "\n".join(lines).encode()
    assert body.count(b"\n") == 2
    assert to_body([]) == b""


def test_unicode_body_is_utf8() -> None:
    body = to_body([reading(unit="m³", device="表1")])
    assert "unit=m³".encode() in body
    assert "device=表1".encode() in body
