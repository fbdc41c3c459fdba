"""Modbus: sans-I/O codec, read planning, the TCP driver and the RTU driver."""

from drivers.modbus.codec import (
    EXCEPTION_NAMES,
    MAX_READ_REGISTERS,
    ExceptionResponse,
    IllegalRequest,
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
)
from drivers.modbus.driver import ChannelResult, ModbusDriver, PymodbusTcpReader, RegisterReader
from drivers.modbus.plan import ReadPlan, describe_plan, plan_reads
from drivers.modbus.rtu import RtuReader

__all__ = [
    "EXCEPTION_NAMES",
    "MAX_READ_REGISTERS",
    "ChannelResult",
    "ExceptionResponse",
    "IllegalRequest",
    "ModbusDriver",
    "ModbusProtocolError",
    "PymodbusTcpReader",
    "ReadPlan",
    "ReadRequest",
    "ReadResponse",
    "RegisterReader",
    "RtuDecoder",
    "RtuReader",
    "TcpDecoder",
    "crc16",
    "decode_value",
    "describe_plan",
    "encode_rtu",
    "encode_tcp",
    "encode_value",
    "plan_reads",
]
