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

from daq.config import Historian, InfluxV1, InfluxV2, LoadedConfig
from daq.model import Reading

__all__ = ["Storage", "StorageError", "open_storage"]


class StorageError(Exception):
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


def open_storage(loaded: LoadedConfig) -> Storage:
    """The storage configured in ``loaded.config.storage`` (``kind`` chooses the backend)."""
    cfg = loaded.config.storage
    if isinstance(cfg, Historian):
        from gateway.storage.historian import HistorianStorage

        return HistorianStorage(loaded.resolve(cfg.path))
    if isinstance(cfg, InfluxV1):
        from gateway.storage.influx_v1 import InfluxV1Storage

        return InfluxV1Storage(
            cfg.url,
            database=cfg.database,
            retention_policy=cfg.retention_policy,
            username=cfg.username,
            password=loaded.secret(cfg.password, cfg.password_file),
            create_database=cfg.create_database,
            ca_file=str(loaded.resolve(cfg.ca_file)) if cfg.ca_file else None,
            timeout_s=cfg.timeout_s,
        )
    if isinstance(cfg, InfluxV2):
        from gateway.storage.influx_v2 import InfluxV2Storage

        return InfluxV2Storage(
            cfg.url,
            org=cfg.org,
            bucket=cfg.bucket,
            token=loaded.secret(cfg.token, cfg.token_file),
            ca_file=str(loaded.resolve(cfg.ca_file)) if cfg.ca_file else None,
            timeout_s=cfg.timeout_s,
        )
    raise ValueError(f"unknown storage kind {getattr(cfg, 'kind', cfg)!r}")
