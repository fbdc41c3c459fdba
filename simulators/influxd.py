"""A private InfluxDB 1.x (Debian's ``influxd``) on loopback, for tests and benchmarks.

Everything in one temporary directory, HTTP on 127.0.0.1 only, every other listener
(graphite, collectd, opentsdb, UDP) and reporting off.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from simulators.broker import free_port

INFLUXD_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{tmp}/meta"
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = "{tmp}/data"
  wal-dir = "{tmp}/wal"
  query-log-enabled = false
  index-version = "inmem"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false

[continuous_queries]
  enabled = false

[ifql]
  enabled = false

[subscriber]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false

[logging]
  level = "warn"
"""


def find_influxd() -> str | None:
    for candidate in (shutil.which("influxd"), "/usr/bin/influxd"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def influxd_command(binary: str, tmp: Path, http_port: int) -> list[str]:
    """Write the config into ``tmp`` and return the command that runs influxd with it."""
    conf = tmp / "influxdb.conf"
    conf.write_text(INFLUXD_CONFIG.format(tmp=tmp, http_port=http_port, rpc_port=free_port()),
                    encoding="utf-8")
    return [binary, "run", "-config", str(conf)]
