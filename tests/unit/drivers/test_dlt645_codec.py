"""DL/T 645-2007 codec against the published frames for meter 558890213594."""

from __future__ import annotations

import datetime as dt

import pytest

from drivers.dlt645 import (
    Dlt645AbnormalReply,
    Dlt645Decoder,
    Dlt645Error,
    Frame,
    abnormal_reply_to,
    address_to_wire,
    decode_bcd,
    encode_bcd,
    encode_frame,
    identifiers,
    parse_address_reply,
    parse_read_reply,
    read_address_request,
    read_data_request,
    read_followup_request,
    reply_to,
    time_sync_frame,
)

METER = "558890213594"


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def decode_one(wire: bytes) -> Frame:
    (frame,) = Dlt645Decoder().feed(wire)
    return frame


def test_nameplate_address_goes_low_byte_first() -> None:
    assert address_to_wire(METER) == h("94 35 21 90 88 55")


def test_read_address_request_and_reply() -> None:
    assert encode_frame(read_address_request()) == h(
        "FE FE FE FE 68 AA AA AA AA AA AA 68 13 00 DF 16")
    reply = decode_one(h("FE FE FE FE 68 94 35 21 90 88 55 68 93 06 C7 68 54 C3 BB 88 49 16"))
    assert parse_address_reply(reply) == METER


def test_forward_active_energy() -> None:
    request = read_data_request(METER, 0x00010000)
    assert encode_frame(request, wakeup=0) == h("68 94 35 21 90 88 55 68 11 04 33 33 34 33 09 16")
    reply = decode_one(h("68 94 35 21 90 88 55 68 91 08 33 33 34 33 59 35 33 33 81 16"))
    spec = identifiers()[0x00010000]
    assert spec.decode(parse_read_reply(reply, 0x00010000)) == pytest.approx(2.26)
    assert spec.unit == "kWh"


@pytest.mark.parametrize(("wire", "di", "value"), [
    ("68 94 35 21 90 88 55 68 91 06 33 34 34 35 7B 55 5E 16", 0x02010100, 224.8),
    ("68 94 35 21 90 88 55 68 91 07 33 34 35 35 6B 35 33 63 16", 0x02020100, 0.238),
])
def test_phase_a_voltage_and_current(wire: str, di: int, value: float) -> None:
    reply = decode_one(h(wire))
    assert identifiers()[di].decode(parse_read_reply(reply, di)) == pytest.approx(value)


def test_replies_with_or_without_wakeup_bytes_byte_by_byte_and_after_garbage() -> None:
    frame = reply_to(read_data_request(METER, 0x02010100), h("00 01 01 02 48 22"))
    for wakeup in range(5):
        wire = b"\x00\x68\x12garbage" + encode_frame(frame, wakeup)
        dec = Dlt645Decoder()
        got = [f for b in wire for f in dec.feed(bytes((b,)))]
        assert got == [frame]
        assert dec.discarded >= 10


def test_a_bad_checksum_or_end_byte_is_skipped() -> None:
    reading = reply_to(read_data_request(METER, 0x00010000), h("00 00 01 00 26 02 00 00"))
    good = encode_frame(reading)
    bad_cs = bytearray(good)
    bad_cs[-2] ^= 0xFF
    bad_end = bytearray(good)
    bad_end[-1] = 0x17
    dec = Dlt645Decoder()
    assert dec.feed(bytes(bad_cs)) == []
    assert dec.feed(bytes(bad_end)) == []
    assert len(dec.feed(good)) == 1


def test_abnormal_reply_is_a_typed_error() -> None:
    request = read_data_request(METER, 0x04000101)
    reply = decode_one(encode_frame(abnormal_reply_to(request, 0x02)))
    assert reply.control == 0xD1
    with pytest.raises(Dlt645AbnormalReply, match="no such data") as info:
        parse_read_reply(reply, 0x04000101)
    assert info.value.error == 0x02


def test_reply_for_another_identifier_is_refused() -> None:
    reply = decode_one(h("68 94 35 21 90 88 55 68 91 08 33 33 34 33 59 35 33 33 81 16"))
    with pytest.raises(Dlt645Error, match="another data identifier"):
        parse_read_reply(reply, 0x00020000)


def test_follow_up_and_more_frames_bit() -> None:
    request = read_followup_request(METER, 0x00010000, 1)
    assert request.function == 0x12
    assert request.data == h("00 00 01 00 01")
    reply = reply_to(request, h("00 00 01 00 26 02 00 00"), more=True)
    assert reply.control == 0xB2
    assert decode_one(encode_frame(reply)).more_follows


def test_broadcast_time_sync_sends_seconds_first() -> None:
    frame = time_sync_frame(dt.datetime(2026, 11, 25, 17, 52, 30))
    assert frame.address == "999999999999"
    assert frame.function == 0x08
    assert frame.data == h("30 52 17 25 11 26")  # ss mm hh DD MM YY
    assert encode_frame(frame, 0)[1:7] == h("99 99 99 99 99 99")


@pytest.mark.parametrize(("value", "length", "decimals", "signed", "wire"), [
    (224.8, 2, 1, False, "48 22"),
    (0.238, 3, 3, True, "38 02 00"),
    (-0.238, 3, 3, True, "38 02 80"),
    (-12.3456, 3, 4, True, "56 34 92"),
    (2.26, 4, 2, False, "26 02 00 00"),
    (999999.99, 4, 2, False, "99 99 99 99"),
])
def test_bcd(value: float, length: int, decimals: int, signed: bool, wire: str) -> None:
    assert encode_bcd(value, length, decimals, signed) == h(wire)
    assert decode_bcd(h(wire), decimals, signed) == pytest.approx(value)


def test_bcd_errors() -> None:
    with pytest.raises(Dlt645Error):
        decode_bcd(h("4A 22"), 1, False)
    with pytest.raises(Dlt645Error):
        encode_bcd(1000.0, 2, 1, False)
    with pytest.raises(Dlt645Error):
        encode_bcd(800.0, 2, 1, True)  # 7999.9 is the signed maximum; 800.0 → 8000
    with pytest.raises(Dlt645Error):
        address_to_wire("55889021359")


def test_identifier_table_is_consistent() -> None:
    table = identifiers()
    assert {0x00000000, 0x00010000, 0x00020000, 0x02010100, 0x02020100, 0x02030000,
            0x02060000, 0x02800002} <= set(table)
    for spec in table.values():
        assert 1 <= spec.length <= 4
        assert spec.encode(0.0) == bytes(spec.length)
