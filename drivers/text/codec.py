"""Sans-I/O line codec shared by the serial text instruments (SCPI, MT-SICS, generic).

No sockets, no clocks, no asyncio: :class:`LineDecoder` takes bytes whole or in pieces and
returns complete lines; :func:`encode_line` turns one command into bytes for the wire.

Error contract (documented choice):

* :meth:`LineDecoder.feed` never raises for any input. A line longer than ``max_line``
  bytes is *dropped* and counted (``overlong`` lines, ``discarded`` bytes); the decoder
  resynchronises on the next terminator. Raising would lose the good lines already decoded
  from the same chunk and make the result depend on how the input was chunked; a driver
  waiting for a reply that was dropped sees a response timeout, and the counters say why.
* Bytes that are not valid in ``encoding`` become U+FFFD in the returned line (decoding is
  done per complete line, so chunking cannot change it). The instrument parsers then reject
  the line with :class:`TextProtocolError`, which is more useful than a silent drop.
* :class:`TextProtocolError` is the only exception type of this package's codecs: every
  parser raises it (or one of its subclasses) for anything it cannot accept, including
  replies in which the instrument itself reports an error (:class:`InstrumentReportedError`).
"""

from __future__ import annotations

from typing import Final

from drivers.errors import CodecError

__all__ = [
    "TERMINATORS",
    "InstrumentReportedError",
    "InvalidReading",
    "LineDecoder",
    "RangeReportedError",
    "TextProtocolError",
    "encode_line",
]

TERMINATORS: Final = (b"\r\n", b"\n", b"\r")


class TextProtocolError(CodecError):
    """A line that is not a valid reply (or a command that cannot be encoded)."""


class InstrumentReportedError(TextProtocolError):
    """A well-formed reply in which the instrument reports an error (``ES``, ``-113``…)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"instrument error {code}: {message}")


class RangeReportedError(InstrumentReportedError):
    """The instrument reports its input out of range: overload (``over``) or underload."""

    def __init__(self, code: str, message: str, direction: str) -> None:
        self.direction = direction
        super().__init__(code, message)


class InvalidReading(InstrumentReportedError):
    """The instrument sent its "not a number" marker (SCPI 9.91E37): no valid reading."""


class LineDecoder:
    """Stream decoder: bytes in, complete lines (without terminator) out.

    ``terminator`` is matched exactly (``b"\\r\\n"``, ``b"\\n"`` or ``b"\\r"``). Empty lines
    are returned as ``""``; callers that do not expect them skip them.
    """

    def __init__(
        self, terminator: bytes = b"\r\n", max_line: int = 4096, encoding: str = "ascii"
    ) -> None:
        if terminator not in TERMINATORS:
            raise ValueError(f"terminator must be one of {TERMINATORS!r}")
        if max_line < 1:
            raise ValueError("max_line must be positive")
        "".encode(encoding)  # LookupError for an unknown codec, now rather than later
        self.terminator = terminator
        self.max_line = max_line
        self.encoding = encoding
        self._buf = bytearray()
        self._skipping = False  # inside an overlong line: drop bytes up to the next terminator
        self.overlong = 0  # lines dropped for exceeding max_line
        self.discarded = 0  # bytes dropped with them

    def reset(self) -> None:
        """Forget any partial line (a driver calls this after a timeout or reconnect)."""
        self._buf.clear()
        self._skipping = False

    @property
    def pending(self) -> int:
        """Bytes held for an unfinished line."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[str]:
        buf = self._buf
        buf += data
        term = self.terminator
        tlen = len(term)
        out: list[str] = []
        while True:
            end = buf.find(term)
            if end < 0:
                break
            if self._skipping:
                self.discarded += end + tlen
                self._skipping = False
            elif end > self.max_line:
                self.discarded += end + tlen
                self.overlong += 1
            else:
                out.append(bytes(buf[:end]).decode(self.encoding, errors="replace"))
            del buf[: end + tlen]
        # No complete terminator left. Keep the last tlen-1 bytes: they may start one.
        if self._skipping:
            keep = tlen - 1
            if len(buf) > keep:
                self.discarded += len(buf) - keep
                del buf[: len(buf) - keep]
        elif len(buf) >= self.max_line + tlen:
            # any terminator now starts at index >= len(buf) - tlen + 1 > max_line
            self.overlong += 1
            self._skipping = True
            keep = tlen - 1
            self.discarded += len(buf) - keep
            del buf[: len(buf) - keep]
        return out


def encode_line(text: str, terminator: bytes = b"\r\n", encoding: str = "ascii") -> bytes:
    """One command (or reply) → bytes with the terminator appended."""
    if terminator not in TERMINATORS:
        raise TextProtocolError(f"terminator must be one of {TERMINATORS!r}")
    if "\r" in text or "\n" in text:
        raise TextProtocolError(f"a line cannot contain CR or LF: {text!r}")
    try:
        return text.encode(encoding) + terminator
    except UnicodeEncodeError as exc:
        raise TextProtocolError(f"not encodable as {encoding}: {text!r}") from exc
