"""What the ingest writes readings into: the :class:`Storage` protocol and its error.

A storage is synchronous: the ingest calls :meth:`Storage.write` from its writer thread with
a batch of readings and acknowledges the batch's MQTT messages only after it returns. Every
failure is a :class:`StorageError`; ``retryable`` tells the caller whether writing the same
batch again later may succeed (server down, timeout, HTTP 5xx, 429) or never will (HTTP 4xx:
bad request, unknown database, authentication, field type conflict) — in which case the batch
must go somewhere else (a dead-letter spool), never back into the retry loop.

Writes are idempotent in every backend: a reading is keyed by its series (enterprise,
gateway, device, channel, quantity) and ``ts_ns``, and writing it again overwrites it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from daq.model import Reading
from gateway.errors import GatewayError

__all__ = ["Storage", "StorageError", "retryable_status"]


class StorageError(GatewayError):
    """A write or query failed.

    ``retryable``: the same request may succeed later (connection refused or reset, timeout,
    HTTP 5xx, 408, 429). ``status``: the HTTP status when the server answered.
    """

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self)!r}, retryable={self.retryable}, "
                f"status={self.status})")


def retryable_status(status: int) -> bool:
    """Whether an HTTP error status is worth retrying."""
    return status >= 500 or status in (408, 429)


@runtime_checkable
class Storage(Protocol):
    """A place readings are written to (InfluxDB, VictoriaMetrics, the embedded historian)."""

    def write(self, readings: Sequence[Reading]) -> None:
        """Write a batch, all or nothing as far as the backend allows; raise StorageError."""
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...
