"""Where readings end up: InfluxDB 1.x (``/write``), the InfluxDB v2 write API (InfluxDB 2.x,
3.x, 1.8+, VictoriaMetrics) or the embedded SQLite historian (the default).

``open_storage(loaded)`` picks the backend from ``storage.kind`` in the site configuration;
every backend implements :class:`Storage` (``write(readings)``, ``close()``) and raises
:class:`StorageError` with ``retryable`` set. :mod:`gateway.storage.lineproto` formats
readings as line protocol.
"""

from gateway.storage.base import Storage, StorageError
from gateway.storage.factory import open_storage
from gateway.storage.historian import HistorianStorage
from gateway.storage.influx_v1 import InfluxV1Storage
from gateway.storage.influx_v2 import InfluxV2Storage
from gateway.storage.lineproto import to_body, to_line, to_lines

__all__ = [
    "HistorianStorage",
    "InfluxV1Storage",
    "InfluxV2Storage",
    "Storage",
    "StorageError",
    "open_storage",
    "to_body",
    "to_line",
    "to_lines",
]
