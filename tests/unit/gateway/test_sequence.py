"""RangeSet against a plain set of integers: the same membership, ranges and gaps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.sequence import RangeSet


def ranges_of(numbers: set[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for n in sorted(numbers):
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


@given(st.lists(st.tuples(st.integers(1, 200), st.integers(0, 10)), max_size=40))
def test_ranges_equal_a_plain_set(adds: list[tuple[int, int]]) -> None:
    rs, plain = RangeSet(), set()
    for first, width in adds:
        rs.add_range(first, first + width)
        plain.update(range(first, first + width + 1))
    assert rs.ranges() == ranges_of(plain)
    assert len(rs) == len(plain)
    assert all((n in rs) == (n in plain) for n in range(215))
    if plain:
        missing = set(range(min(plain), max(plain) + 1)) - plain
        assert rs.gaps() == ranges_of(missing)


def test_add_reports_duplicates() -> None:
    rs = RangeSet()
    assert rs.add(5)
    assert rs.add(6)
    assert not rs.add(5)
    rs.add_range(10, 12)
    assert rs.ranges() == [(5, 6), (10, 12)]
    assert rs.gaps() == [(7, 9)]
