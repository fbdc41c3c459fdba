"""DL/T 645 decoder: arbitrary bytes, whole or chunked, never raise and never hang; every
frame round-trips; a valid frame survives any garbage in front of it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from drivers.dlt645 import Dlt645Decoder, Frame, decode_bcd, encode_bcd, encode_frame

addresses = st.text(alphabet="0123456789", min_size=12, max_size=12)
frames = st.builds(Frame, addresses, st.integers(0, 255), st.binary(max_size=200))


@given(st.binary(max_size=600), st.lists(st.integers(1, 50), max_size=40))
def test_arbitrary_bytes_whole_or_chunked(data: bytes, cuts: list[int]) -> None:
    whole = Dlt645Decoder().feed(data)
    dec = Dlt645Decoder()
    chunked: list[Frame] = []
    pos = 0
    for n in [*cuts, len(data)]:
        chunked += dec.feed(data[pos : pos + n])
        pos += n
    assert chunked == whole


@given(frames, st.integers(0, 4))
def test_round_trip(frame: Frame, wakeup: int) -> None:
    assert Dlt645Decoder().feed(encode_frame(frame, wakeup)) == [frame]


@given(st.binary(max_size=100).filter(lambda b: 0x68 not in b), frames)
def test_a_frame_after_garbage_is_found(garbage: bytes, frame: Frame) -> None:
    assert Dlt645Decoder().feed(garbage + encode_frame(frame)) == [frame]


@given(st.integers(1, 4), st.integers(0, 4), st.booleans(), st.data())
def test_bcd_round_trip(length: int, decimals: int, signed: bool, data: st.DataObject) -> None:
    top = (8 * 10 ** (2 * length - 1) if signed else 10 ** (2 * length)) - 1
    scaled = data.draw(st.integers(-top if signed else 0, top))
    value = scaled / 10**decimals
    assert decode_bcd(encode_bcd(value, length, decimals, signed), decimals, signed) == value
