"""The typed errors every driver raises.

A driver never returns ``None`` for a failure and never lets a library's own exception type
escape: it raises one of these. Each carries a :class:`daq.model.Reason`, the stable code a
reading's quality flag, dashboards and alarms key on.
"""

from __future__ import annotations

from typing import ClassVar

from daq.errors import DaqError
from daq.model import Reason

__all__ = [
    "CodecError",
    "DecodeError",
    "DeviceConnectionError",
    "DeviceException",
    "DeviceProtocolError",
    "DeviceTimeout",
    "DriverError",
    "InternalError",
]


class DriverError(DaqError):
    """Base of all driver failures; ``reason`` says which kind."""

    reason: ClassVar[Reason]


class InternalError(DriverError):
    """An unexpected exception inside daq while polling (a bug, not the device's fault)."""

    reason = Reason.INTERNAL


class DeviceTimeout(DriverError):
    """The device did not answer in time."""

    reason = Reason.TIMEOUT


class DeviceConnectionError(DriverError):
    """Connection refused, reset, lost or unreachable."""

    reason = Reason.CONNECTION


class DeviceProtocolError(DriverError):
    """A malformed frame or an answer that does not match the request."""

    reason = Reason.PROTOCOL


class DeviceException(DriverError):
    """The device answered with an exception response (``name``: the protocol's name of
    ``code``, e.g. Modbus 02 "illegal data address")."""

    reason = Reason.DEVICE_EXCEPTION

    def __init__(self, code: int, function: int | None = None, detail: str = "", *,
                 name: str = "unknown exception") -> None:
        self.code = code
        self.function = function
        self.name = name
        where = f" to FC{function}" if function is not None else ""
        extra = f" ({detail})" if detail else ""
        super().__init__(f"device exception {code} ({self.name}){where}{extra}")


class CodecError(DriverError):
    """Bytes that are not the protocol, raised by a sans-I/O codec (the one error a codec
    raises: :class:`~drivers.modbus.codec.ModbusProtocolError`,
    :class:`~drivers.dlt645.codec.Dlt645Error`,
    :class:`~drivers.text.codec.TextProtocolError`). Drivers, simulators and fuzzers catch
    their codec's own subclass; one that reaches a poll marks the channel ``protocol``."""

    reason = Reason.PROTOCOL


class DecodeError(DriverError):
    """Registers arrived but do not hold a usable value (NaN, infinity, non-ASCII text)."""

    reason = Reason.DECODE
