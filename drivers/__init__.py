"""Protocol codecs (sans-I/O) and instrument drivers (codec + transport)."""

from drivers.errors import (
    DecodeError,
    DeviceConnectionError,
    DeviceException,
    DeviceProtocolError,
    DeviceTimeout,
    DriverError,
)

__all__ = [
    "DecodeError",
    "DeviceConnectionError",
    "DeviceException",
    "DeviceProtocolError",
    "DeviceTimeout",
    "DriverError",
]
