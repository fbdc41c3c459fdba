"""Modbus: sans-I/O codec, read planning and the TCP driver."""

from drivers.modbus.codec import (
    ExceptionResponse,
    ModbusProtocolError,
    ReadRequest,
    ReadResponse,
    RtuDecoder,
    TcpDecoder,
    crc16,
    decode_value,
    encode_rtu,
    encode_tcp,
    encode_value,
    engineering_value,
)

__all__ = [
    "ExceptionResponse",
    "ModbusProtocolError",
    "ReadRequest",
    "ReadResponse",
    "RtuDecoder",
    "TcpDecoder",
    "crc16",
    "decode_value",
    "encode_rtu",
    "encode_tcp",
    "encode_value",
    "engineering_value",
]
