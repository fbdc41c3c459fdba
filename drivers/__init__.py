"""Protocol codecs (sans-I/O), transports (readers, links) and the drivers that poll devices
(codec + transport, through the one poll loop of :mod:`drivers.poll`)."""

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
