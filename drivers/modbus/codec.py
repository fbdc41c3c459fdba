"""Sans-I/O Modbus codec: register values, PDUs, and TCP (MBAP) and RTU framing.

Nothing here does I/O, keeps a clock or knows asyncio. Drivers, simulators, fuzzers and
benchmarks share it. Decoders accept input whole or in pieces, resynchronise after garbage
(RTU) and raise only :class:`ModbusProtocolError` for what they cannot parse.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from daq.config.profiles import REGISTERS_PER_TYPE, DataType, WordOrder
from drivers.errors import CodecError

MAX_READ_REGISTERS = 125  # Modbus application protocol v1.1b3, 6.3/6.4


class ModbusProtocolError(CodecError):
    """Bytes that are not a valid Modbus frame, or a value that cannot be (de)coded."""


# ---------------------------------------------------------------------------------------------
# Register values


_STRUCT: dict[DataType, str] = {
    DataType.U16: "H",
    DataType.I16: "h",
    DataType.U32: "I",
    DataType.I32: "i",
    DataType.U64: "Q",
    DataType.F32: "f",
    DataType.F64: "d",
}


def _to_wire(big_endian: bytes, order: WordOrder) -> bytes:
    """Rearrange a big-endian value (ABCD…) into the device's order. Involutive."""
    if order is WordOrder.ABCD or (len(big_endian) == 2 and order is WordOrder.CDAB):
        return big_endian
    if order is WordOrder.DCBA:
        return big_endian[::-1]
    words = [big_endian[i : i + 2] for i in range(0, len(big_endian), 2)]
    if order is WordOrder.BADC:
        return b"".join(w[::-1] for w in words)
    # CDAB: words reversed, bytes within a word big-endian
    return b"".join(reversed(words))


def decode_value(registers: Sequence[int], dtype: DataType, order: WordOrder) -> int | float | str:
    """Decode registers (16-bit ints, as read) into a value."""
    raw = b"".join(r.to_bytes(2, "big") for r in registers)
    if dtype is DataType.STRING:
        text = raw.split(b"\x00", 1)[0]
        try:
            return text.decode("ascii").rstrip()
        except UnicodeDecodeError as exc:
            raise ModbusProtocolError(f"string register content is not ASCII: {raw!r}") from exc
    need = REGISTERS_PER_TYPE[dtype]
    if len(registers) != need:
        raise ModbusProtocolError(f"{dtype} needs {need} registers, got {len(registers)}")
    value: int | float = struct.unpack(">" + _STRUCT[dtype], _to_wire(raw, order))[0]
    return value


def encode_value(
    value: int | float | str, dtype: DataType, order: WordOrder, length: int | None = None
) -> list[int]:
    """Encode a value into registers as a device with this data type and order sends them."""
    if dtype is DataType.STRING:
        if length is None:
            raise ModbusProtocolError("string encoding needs a length in registers")
        data = str(value).encode("ascii")[: 2 * length].ljust(2 * length, b"\x00")
    else:
        fmt = ">" + _STRUCT[dtype]
        try:
            if dtype in (DataType.F32, DataType.F64):
                data = struct.pack(fmt, float(value))
            else:
                data = struct.pack(fmt, int(value))
        except (struct.error, OverflowError) as exc:
            raise ModbusProtocolError(f"{value!r} does not fit {dtype}") from exc
        data = _to_wire(data, order)
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


# ---------------------------------------------------------------------------------------------
# PDUs


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Read holding (3) or input (4) registers."""

    unit: int
    function: int
    address: int
    count: int

    def __post_init__(self) -> None:
        if not (0 <= self.address <= 0xFFFF and 0 <= self.count <= 0xFFFF
                and 0 <= self.unit <= 255 and 0 <= self.function <= 0x7F):
            raise ModbusProtocolError(f"request out of range: {self}")

    def pdu(self) -> bytes:
        return struct.pack(">BHH", self.function, self.address, self.count)


@dataclass(frozen=True, slots=True)
class ReadResponse:
    unit: int
    function: int
    registers: tuple[int, ...]

    def pdu(self) -> bytes:
        if len(self.registers) > MAX_READ_REGISTERS:
            raise ModbusProtocolError(f"{len(self.registers)} registers do not fit one response")
        body = b"".join(r.to_bytes(2, "big") for r in self.registers)
        return bytes((self.function, len(body))) + body


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    unit: int
    function: int  # the request's function code (without the 0x80 bit)
    code: int

    def pdu(self) -> bytes:
        return bytes((self.function | 0x80, self.code))


@dataclass(frozen=True, slots=True)
class IllegalRequest:
    """A request a server cannot serve, with the exception code the spec says it deserves
    (1 illegal function, 3 illegal data value). Parsed, not raised, so the server can answer
    it and the other frames of the same read are not lost."""

    unit: int
    function: int
    code: int

    def pdu(self) -> bytes:
        return ExceptionResponse(self.unit, self.function, self.code).pdu()


Frame = ReadRequest | ReadResponse | ExceptionResponse | IllegalRequest

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

READ_FUNCTIONS = (3, 4)


def exception_name(code: int) -> str:
    """The Modbus specification's name of an exception code."""
    return EXCEPTION_NAMES.get(code, "unknown exception")


def parse_pdu(unit: int, pdu: bytes, role: Literal["client", "server"]) -> Frame:
    """Parse a PDU. ``role`` is who parses: a server parses requests, a client responses."""
    if not pdu:
        raise ModbusProtocolError("empty PDU")
    fc = pdu[0]
    if role == "server":
        if fc not in READ_FUNCTIONS:
            return IllegalRequest(unit, fc & 0x7F, 1)
        if len(pdu) != 5:
            return IllegalRequest(unit, fc, 3)
        _, address, count = struct.unpack(">BHH", pdu)
        return ReadRequest(unit, fc, address, count)
    if fc & 0x80:
        if len(pdu) != 2:
            raise ModbusProtocolError("exception response must be 2 bytes")
        return ExceptionResponse(unit, fc & 0x7F, pdu[1])
    if fc not in READ_FUNCTIONS:
        raise ModbusProtocolError(f"unsupported response function 0x{fc:02X}")
    if len(pdu) < 2 or pdu[1] % 2 or len(pdu) != 2 + pdu[1]:
        raise ModbusProtocolError("byte count does not match response length")
    regs = struct.unpack(f">{pdu[1] // 2}H", pdu[2:])
    return ReadResponse(unit, fc, regs)


# ---------------------------------------------------------------------------------------------
# Modbus TCP (MBAP header)


def encode_tcp(frame: Frame, transaction_id: int) -> bytes:
    pdu = frame.pdu()
    return struct.pack(">HHHB", transaction_id & 0xFFFF, 0, len(pdu) + 1, frame.unit) + pdu


class TcpDecoder:
    """Stream decoder for Modbus TCP. ``feed`` returns complete ``(transaction_id, frame)``."""

    def __init__(self, role: Literal["client", "server"]) -> None:
        self.role: Literal["client", "server"] = role
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, Frame]]:
        self._buf += data
        out: list[tuple[int, Frame]] = []
        while len(self._buf) >= 7:
            tid, proto, length, unit = struct.unpack_from(">HHHB", self._buf)
            if proto != 0 or not 2 <= length <= 254:
                self._buf.clear()  # a TCP stream cannot resynchronise: drop and let caller reset
                raise ModbusProtocolError(f"bad MBAP header (protocol {proto}, length {length})")
            if len(self._buf) < 6 + length:
                break
            pdu = bytes(self._buf[7 : 6 + length])
            del self._buf[: 6 + length]
            out.append((tid, parse_pdu(unit, pdu, self.role)))
        return out


# ---------------------------------------------------------------------------------------------
# Modbus RTU


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """Modbus CRC-16 (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc


def encode_rtu(frame: Frame) -> bytes:
    body = bytes((frame.unit,)) + frame.pdu()
    return body + crc16(body).to_bytes(2, "little")


class RtuDecoder:
    """Stream decoder for Modbus RTU. Drops bytes until a frame with a valid CRC is found.

    The frame length is inferred from the function code (requests 8 bytes; responses
    5 + byte count; exceptions 5), so no inter-character timing is needed.
    """

    def __init__(self, role: Literal["client", "server"]) -> None:
        self.role: Literal["client", "server"] = role
        self._buf = bytearray()
        self.discarded = 0  # bytes dropped while resynchronising

    def _expected_length(self) -> int | None:
        if len(self._buf) < 2:
            return None
        fc = self._buf[1]
        if self.role == "server":
            return 8 if fc in READ_FUNCTIONS else -1
        if fc & 0x80:
            return 5
        if fc not in READ_FUNCTIONS:
            return -1
        if len(self._buf) < 3:
            return None
        return 5 + self._buf[2]

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        while True:
            n = self._expected_length()
            if n is None:
                break
            if n < 0:
                del self._buf[0]
                self.discarded += 1
                continue
            if len(self._buf) < n:
                break
            candidate = bytes(self._buf[:n])
            if crc16(candidate[:-2]) != int.from_bytes(candidate[-2:], "little"):
                del self._buf[0]
                self.discarded += 1
                continue
            try:
                frame = parse_pdu(candidate[0], candidate[1:-2], self.role)
            except ModbusProtocolError:
                del self._buf[0]
                self.discarded += 1
                continue
            del self._buf[:n]
            out.append(frame)
        return out

