"""Shared fixtures. Services (databases, brokers, simulators) are started only by
``tests/services.py``; import its fixtures here so every test directory sees them."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# -- services: InfluxDB 1.x, VictoriaMetrics, headless Chromium (tests/services.py) ---
# -- and MQTT: the Mosquitto on 127.0.0.1:1883 when it answers, else a private one
from tests.services import (
    chromium,
    influx_db,
    influxdb_v1,
    mqtt_broker,
    private_broker,
    victoria_metrics,
)

__all__ = [
    "chromium", "influx_db", "influxdb_v1", "mqtt_broker", "private_broker", "victoria_metrics",
]

# What commands keep without a path (the demo's files, the default registry, sessions) goes to
# the data directory: the suite's own, never the user's (nor /var/lib/daq when run as root)
os.environ["DAQ_HOME"] = tempfile.mkdtemp(prefix="daq-test-home-")
os.environ.pop("STATE_DIRECTORY", None)
atexit.register(shutil.rmtree, os.environ["DAQ_HOME"], ignore_errors=True)
