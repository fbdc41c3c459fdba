"""Sans-I/O codec for DL/T 645-2007, the Chinese multi-function electricity-meter protocol.

Frame: ``[FE×0..4] 68 A0..A5 68 C L DATA CS 16``. The address is 12 BCD digits sent low byte
first (nameplate ``558890213594`` → ``94 35 21 90 88 55``); ``AA`` fills wildcard bytes and
``99…99`` broadcasts. Every data byte carries +0x33 on the wire. CS is the sum of the bytes
from the first ``68`` through the data, modulo 256. Control byte: bit 7 direction (1 = from
the meter), bit 6 abnormal reply, bit 5 more frames follow, bits 4–0 the function.

No sockets, no clocks: :class:`Dlt645Decoder` takes bytes whole or in pieces, skips wake-up
bytes and garbage, and yields :class:`Frame` objects; everything else raises
:class:`Dlt645Error`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from drivers.errors import CodecError

START = 0x68
END = 0x16
WAKEUP = b"\xfe\xfe\xfe\xfe"
WILDCARD = "AAAAAAAAAAAA"
BROADCAST = "999999999999"
MAX_DATA = 200  # L is one byte; DL/T 645-2007 limits reads to 200 data bytes

# function codes (control byte bits 4–0)
TIME_SYNC = 0x08
READ_DATA = 0x11
READ_FOLLOWUP = 0x12
READ_ADDRESS = 0x13

DIRECTION_BIT = 0x80
ABNORMAL_BIT = 0x40
MORE_BIT = 0x20

ERROR_BITS = {  # the one error byte of an abnormal reply
    0x01: "other error",
    0x02: "no such data (unknown data identifier)",
    0x04: "password error / unauthorised",
    0x08: "communication rate cannot be changed",
    0x10: "yearly time zones exceeded",
    0x20: "daily time periods exceeded",
    0x40: "tariffs exceeded",
}


class Dlt645Error(CodecError):
    """Bytes or values that are not valid DL/T 645-2007."""


class Dlt645AbnormalReply(Dlt645Error):
    """The meter answered with an abnormal reply (control bit 6) and its error byte."""

    def __init__(self, error: int) -> None:
        self.error = error
        names = [name for bit, name in ERROR_BITS.items() if error & bit] or ["unknown"]
        super().__init__(f"abnormal reply 0x{error:02X}: {', '.join(names)}")


# ---------------------------------------------------------------------------------------------
# Addresses and data identifiers


def address_to_wire(address: str) -> bytes:
    """Nameplate address (12 digits; ``A`` for wildcard nibbles) → 6 bytes, low byte first."""
    if len(address) != 12 or any(c not in "0123456789Aa" for c in address):
        raise Dlt645Error(f"address must be 12 BCD digits (or A for wildcards): {address!r}")
    return bytes.fromhex(address)[::-1]


def address_from_wire(raw: bytes) -> str:
    if len(raw) != 6:
        raise Dlt645Error("an address is 6 bytes")
    return raw[::-1].hex().upper()


def di_to_wire(di: int) -> bytes:
    """Data identifier DI3..DI0 → the four bytes as sent (DI0 first), without the +0x33."""
    if not 0 <= di <= 0xFFFFFFFF:
        raise Dlt645Error(f"data identifier out of range: {di:#x}")
    return di.to_bytes(4, "little")


def di_from_wire(raw: bytes) -> int:
    return int.from_bytes(raw[:4], "little")


# ---------------------------------------------------------------------------------------------
# BCD values


def encode_bcd(value: float, length: int, decimals: int, signed: bool) -> bytes:
    """A number → ``length`` BCD bytes, low byte first, sign in the top bit when ``signed``."""
    scaled = round(abs(value) * 10**decimals)
    # signed: the top bit of the highest byte is the sign, so its top digit is at most 7
    limit = 8 * 10 ** (2 * length - 1) if signed else 10 ** (2 * length)
    if scaled >= limit:
        raise Dlt645Error(f"{value} does not fit {length} BCD bytes with {decimals} decimals")
    text = f"{scaled:0{2 * length}d}"
    raw = bytearray(bytes.fromhex(text)[::-1])
    if signed and value < 0:
        raw[-1] |= 0x80
    return bytes(raw)


def decode_bcd(raw: bytes, decimals: int, signed: bool) -> float:
    """BCD bytes (low byte first) → number; raise Dlt645Error on a non-decimal nibble."""
    data = bytearray(raw)
    negative = False
    if signed and data and data[-1] & 0x80:
        negative = True
        data[-1] &= 0x7F
    text = bytes(data[::-1]).hex()
    if not text.isdigit():
        raise Dlt645Error(f"not BCD: {raw.hex(' ')}")
    value: float = int(text) / 10**decimals
    return -value if negative else value


@dataclass(frozen=True, slots=True)
class DataSpec:
    """How the value of one data identifier is encoded (a row of identifiers.yaml)."""

    di: int
    name: str
    quantity: str
    unit: str
    length: int
    decimals: int
    signed: bool

    def decode(self, payload: bytes) -> float:
        if len(payload) != self.length:
            raise Dlt645Error(f"{self.di:08X} ({self.name}) has {self.length} bytes, "
                              f"got {len(payload)}")
        return decode_bcd(payload, self.decimals, self.signed)

    def encode(self, value: float) -> bytes:
        return encode_bcd(value, self.length, self.decimals, self.signed)


@cache
def identifiers() -> dict[int, DataSpec]:
    """The table of data identifiers shipped with daq (``identifiers.yaml``)."""
    rows = yaml.safe_load((Path(__file__).parent / "identifiers.yaml").read_text("utf-8"))
    table = {}
    for row in rows:
        spec = DataSpec(int(row["di"], 16), row["name"], row["quantity"], row["unit"],
                        int(row["length"]), int(row["decimals"]), bool(row["signed"]))
        table[spec.di] = spec
    return table


# ---------------------------------------------------------------------------------------------
# Frames


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame. ``data`` is the payload as the application sees it (the +0x33 removed)."""

    address: str
    control: int
    data: bytes = b""

    @property
    def function(self) -> int:
        return self.control & 0x1F

    @property
    def from_meter(self) -> bool:
        return bool(self.control & DIRECTION_BIT)

    @property
    def abnormal(self) -> bool:
        return bool(self.control & ABNORMAL_BIT)

    @property
    def more_follows(self) -> bool:
        return bool(self.control & MORE_BIT)


def encode_frame(frame: Frame, wakeup: int = 4) -> bytes:
    """Bytes for the wire, with ``wakeup`` (0–4) ``FE`` bytes in front."""
    if not 0 <= wakeup <= 4:
        raise Dlt645Error("0 to 4 wake-up bytes")
    if len(frame.data) > MAX_DATA:
        raise Dlt645Error(f"{len(frame.data)} data bytes: at most {MAX_DATA}")
    if not 0 <= frame.control <= 0xFF:
        raise Dlt645Error("control byte out of range")
    body = (bytes((START,)) + address_to_wire(frame.address) + bytes((START, frame.control,
            len(frame.data))) + bytes((b + 0x33) & 0xFF for b in frame.data))
    return b"\xfe" * wakeup + body + bytes((sum(body) & 0xFF, END))


class Dlt645Decoder:
    """Stream decoder: skips wake-up bytes and garbage, yields complete valid frames.

    A candidate frame starts at a ``68`` with another ``68`` seven bytes on; it is accepted
    when its length fits, its checksum matches and it ends in ``16``. Otherwise one byte is
    dropped and the search goes on (``discarded`` counts them). Garbage that happens to
    look like a frame header makes it wait for up to 212 bytes; a transport calls
    :meth:`reset` after a response timeout so that cannot outlive one transaction.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded = 0

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        buf = self._buf
        while buf:
            start = buf.find(START)
            if start < 0:
                self.discarded += len(buf)
                buf.clear()
                break
            if start:
                self.discarded += start
                del buf[:start]
            if len(buf) < 10:
                break
            if buf[7] != START:
                self._drop()
                continue
            n = 12 + buf[9]
            if len(buf) < n:
                break
            if buf[n - 1] != END or sum(buf[: n - 2]) & 0xFF != buf[n - 2]:
                self._drop()
                continue
            address = address_from_wire(bytes(buf[1:7]))
            data = bytes((b - 0x33) & 0xFF for b in buf[10 : n - 2])
            out.append(Frame(address, buf[8], data))
            del buf[:n]
        return out

    def _drop(self) -> None:
        del self._buf[0]
        self.discarded += 1


# ---------------------------------------------------------------------------------------------
# Requests and replies


def read_address_request() -> Frame:
    return Frame(WILDCARD, READ_ADDRESS)


def read_data_request(address: str, di: int) -> Frame:
    return Frame(address, READ_DATA, di_to_wire(di))


def read_followup_request(address: str, di: int, seq: int) -> Frame:
    return Frame(address, READ_FOLLOWUP, di_to_wire(di) + bytes((seq & 0xFF,)))


def time_sync_frame(when: dt.datetime) -> Frame:
    """Broadcast time synchronisation: ss mm hh DD MM YY (BCD, seconds first)."""
    fields = (when.second, when.minute, when.hour, when.day, when.month, when.year % 100)
    return Frame(BROADCAST, TIME_SYNC, bytes(int(f"{v:02d}", 16) for v in fields))


def reply_to(request: Frame, data: bytes, *, more: bool = False) -> Frame:
    """The meter's normal reply to ``request``."""
    control = DIRECTION_BIT | request.function | (MORE_BIT if more else 0)
    return Frame(request.address, control, data)


def abnormal_reply_to(request: Frame, error: int) -> Frame:
    return Frame(request.address, DIRECTION_BIT | ABNORMAL_BIT | request.function,
                 bytes((error,)))


def parse_read_reply(frame: Frame, di: int) -> bytes:
    """The value bytes of a reply to a read of ``di``; raise on an abnormal or foreign reply."""
    if not frame.from_meter or frame.function not in (READ_DATA, READ_FOLLOWUP):
        raise Dlt645Error(f"not a read reply: control 0x{frame.control:02X}")
    if frame.abnormal:
        raise Dlt645AbnormalReply(frame.data[0] if frame.data else 0)
    if len(frame.data) < 4 or di_from_wire(frame.data) != di:
        raise Dlt645Error(f"reply is for another data identifier: {frame.data[:4].hex(' ')}")
    return frame.data[4:]


def parse_address_reply(frame: Frame) -> str:
    if not frame.from_meter or frame.function != READ_ADDRESS or frame.abnormal:
        raise Dlt645Error(f"not a read-address reply: control 0x{frame.control:02X}")
    if len(frame.data) != 6:
        raise Dlt645Error("a read-address reply carries 6 address bytes")
    return address_from_wire(frame.data)
