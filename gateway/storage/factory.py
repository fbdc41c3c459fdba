"""The storage a site configures: ``storage.kind`` chooses the backend."""

from __future__ import annotations

from daq.config import Historian, InfluxV1, InfluxV2, LoadedConfig
from gateway.storage.base import Storage
from gateway.storage.historian import HistorianStorage
from gateway.storage.influx_v1 import InfluxV1Storage
from gateway.storage.influx_v2 import InfluxV2Storage

__all__ = ["open_storage"]


def open_storage(loaded: LoadedConfig) -> Storage:
    """The storage configured in ``loaded.config.storage`` (``kind`` chooses the backend)."""
    cfg = loaded.config.storage
    if isinstance(cfg, Historian):
        return HistorianStorage(loaded.resolve(cfg.path))
    if isinstance(cfg, InfluxV1):
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
        return InfluxV2Storage(
            cfg.url,
            org=cfg.org,
            bucket=cfg.bucket,
            token=loaded.secret(cfg.token, cfg.token_file),
            ca_file=str(loaded.resolve(cfg.ca_file)) if cfg.ca_file else None,
            timeout_s=cfg.timeout_s,
        )
    raise ValueError(f"unknown storage kind {getattr(cfg, 'kind', cfg)!r}")
