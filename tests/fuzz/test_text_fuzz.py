"""LineDecoder: arbitrary bytes, whole or chunked, never raise and give the same lines;
the instrument parsers raise only TextProtocolError."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from drivers.text import mtsics, prt, scpi
from drivers.text.codec import TERMINATORS, LineDecoder, TextProtocolError, encode_line

terminators = st.sampled_from(TERMINATORS)
alphabet = st.sampled_from([b"a", b"\r", b"\n", b"\xff", b"S", b" ", b"1", b"."])
texty = st.lists(alphabet, max_size=300).map(b"".join)


@given(st.one_of(st.binary(max_size=600), texty), st.lists(st.integers(1, 40), max_size=40),
       terminators, st.integers(1, 20))
def test_whole_or_chunked_same_lines(data: bytes, cuts: list[int], term: bytes,
                                     max_line: int) -> None:
    whole = LineDecoder(term, max_line=max_line).feed(data)
    dec = LineDecoder(term, max_line=max_line)
    chunked: list[str] = []
    pos = 0
    for n in [*cuts, len(data)]:
        chunked += dec.feed(data[pos : pos + n])
        pos += n
    assert chunked == whole
    assert all(len(line.encode("ascii", "replace")) <= max_line for line in whole)


@given(st.lists(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                        max_size=30), max_size=10), terminators, st.binary(max_size=50))
def test_lines_survive_after_garbage(lines: list[str], term: bytes, garbage: bytes) -> None:
    data = garbage + term + b"".join(encode_line(line, term) for line in lines)
    out = LineDecoder(term).feed(data)
    assert out[len(out) - len(lines) :] == lines


@given(st.text(max_size=60))
def test_parsers_raise_only_their_error(line: str) -> None:
    for parser in (scpi.parse_reading, scpi.parse_idn, scpi.parse_error,
                   prt.parse_resistance, mtsics.parse_weight_reply):
        with contextlib.suppress(TextProtocolError):
            parser(line)
