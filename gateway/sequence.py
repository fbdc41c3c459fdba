"""Sets of sequence numbers kept as sorted, merged ranges: what storage holds of a gateway's
stream, which the ingest acknowledges and in which it finds gaps and duplicates."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

__all__ = ["RangeSet"]


class RangeSet:
    """Inclusive ranges of integers, sorted and merged (adjacent ranges join)."""

    __slots__ = ("_firsts", "_lasts")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._firsts: list[int] = []
        self._lasts: list[int] = []
        for first, last in ranges:
            self.add_range(first, last)

    def __contains__(self, n: int) -> bool:
        i = bisect.bisect_right(self._firsts, n) - 1
        return i >= 0 and n <= self._lasts[i]

    def __bool__(self) -> bool:
        return bool(self._firsts)

    def __len__(self) -> int:
        """How many numbers (not ranges)."""
        return sum(b - a + 1 for a, b in zip(self._firsts, self._lasts, strict=True))

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._firsts, self._lasts, strict=True))

    def add(self, n: int) -> bool:
        """Add ``n``; False if it was already there (a duplicate)."""
        if n in self:
            return False
        self.add_range(n, n)
        return True

    def add_range(self, first: int, last: int) -> None:
        if first > last:
            raise ValueError(f"empty range {first}..{last}")
        i = bisect.bisect_left(self._lasts, first - 1)  # first range that may touch
        j = bisect.bisect_right(self._firsts, last + 1)  # past the last that may touch
        if i < j:
            first = min(first, self._firsts[i])
            last = max(last, self._lasts[j - 1])
        self._firsts[i:j] = [first]
        self._lasts[i:j] = [last]

    def gaps(self) -> list[tuple[int, int]]:
        """The holes between the ranges (what is missing below the highest number)."""
        return [(b + 1, a - 1) for a, b in zip(self._firsts[1:], self._lasts[:-1], strict=True)]
