"""InfluxDB v2 write API (``POST /api/v2/write?org=…&bucket=…&precision=ns``).

Spoken by InfluxDB 2.x and 3.x, by InfluxDB 1.8+ (token ``user:password``, bucket
``database/retention-policy``) and by VictoriaMetrics. Uses ``influxdb_client`` with the
synchronous write API and our own line protocol (:mod:`gateway.storage.lineproto`), not
``Point`` objects (about 10 times slower to format).

VictoriaMetrics, measured with 1.79 (see ``tests/integration/gateway/test_storage.py``):

* it answers 204 and silently drops points with timestamps in the future or outside its
  ``-retentionPeriod`` (``vm_rows_ignored_total`` on ``/metrics`` counts them);
* it stores milliseconds: a nanosecond timestamp is truncated (floored) to the millisecond,
  so two readings of a series less than 1 ms apart both stay, at the same millisecond;
* it names series ``{measurement}_{field}`` (``voltage_value``, ``voltage_raw``…), with the
  tags as labels and no label for the bucket;
* string fields (``quality``, ``reason``, ``text``) are stored as the number 0: the quality
  of a reading does not survive in VictoriaMetrics — read it from MQTT or the historian.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from urllib3.exceptions import HTTPError, LocationParseError, SSLError

from daq.model import Reading
from gateway.storage.base import StorageError, retryable_status
from gateway.storage.lineproto import to_body

__all__ = ["InfluxV2Storage"]


class InfluxV2Storage:
    """Writes readings to a bucket through the v2 write API. Thread-safe enough for one
    writer thread (the client's urllib3 pool); no automatic retries."""

    def __init__(
        self,
        url: str,
        *,
        org: str,
        bucket: str,
        token: str | None = None,
        ca_file: str | None = None,
        timeout_s: float = 10.0,
        gzip: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.org = org
        self.bucket = bucket
        kwargs: dict[str, Any] = {"retries": False}
        if ca_file:
            kwargs["ssl_ca_cert"] = ca_file
        self._client: Any = InfluxDBClient(
            url=self.url, token=token or "", org=org, timeout=int(timeout_s * 1000),
            enable_gzip=gzip, **kwargs,
        )
        self._write_api: Any = self._client.write_api(write_options=SYNCHRONOUS)
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, org={self.org!r}, bucket={self.bucket!r})"

    def write(self, readings: Sequence[Reading]) -> None:
        """Write readings in one request; raise :class:`StorageError` on any failure."""
        if not readings:
            return
        self.write_body(to_body(readings))

    def write_body(self, body: bytes) -> None:
        """Write ready-made line protocol (precision ns)."""
        if self._closed:
            raise StorageError(f"{self!r} is closed", retryable=False)
        try:
            self._write_api.write(bucket=self.bucket, org=self.org, record=body,
                                  write_precision=WritePrecision.NS)
        except ApiException as exc:
            status = int(exc.status) if exc.status is not None else None
            body_text = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) \
                else str(exc.body or exc.reason or "")
            raise StorageError(
                f"{self.url} /api/v2/write: HTTP {status}: {body_text[:300].strip()}",
                retryable=status is None or retryable_status(status), status=status,
            ) from exc
        except (SSLError, LocationParseError) as exc:
            raise StorageError(f"{self.url}: {exc}", retryable=False) from exc
        except (HTTPError, OSError) as exc:  # refused, reset, timeouts
            raise StorageError(f"{self.url}: {type(exc).__name__}: {exc}",
                               retryable=True) from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._write_api.close()
            self._client.close()

    def __enter__(self) -> InfluxV2Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
