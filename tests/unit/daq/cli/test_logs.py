"""``daq --version``, ``--data-dir``, and log lines with a date and a UTC offset, as text or as
one JSON object per line (``--log-format json``)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from daq.cli.logs import JsonFormatter, TextFormatter
from daq.cli.main import main
from daq.paths import version

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"
REPO = Path(__file__).resolve().parents[4]


def record(exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            exc_info = sys.exc_info()
    return logging.LogRecord("gateway.x", logging.WARNING, __file__, 1, "device %s: %s",
                             ("incomer", "timeout\nsecond line"), exc_info)


def test_text_lines_carry_date_and_offset() -> None:
    line = TextFormatter().format(record())
    assert re.match(rf"^{ISO} WARNING gateway\.x: device incomer: timeout", line), line


def test_json_lines_are_one_object_each() -> None:
    line = JsonFormatter().format(record(exc=True))
    assert "\n" not in line
    obj = json.loads(line)
    assert set(obj) == {"ts", "level", "logger", "message", "exc_info"}
    assert re.fullmatch(ISO, obj["ts"])
    assert (obj["level"], obj["logger"]) == ("WARNING", "gateway.x")
    assert obj["message"] == "device incomer: timeout\nsecond line"
    assert "RuntimeError: boom" in obj["exc_info"]
    assert "exc_info" not in json.loads(JsonFormatter().format(record()))


def test_version_is_the_installed_distributions() -> None:
    res = CliRunner().invoke(main, ["--version"])
    assert res.exit_code == 0
    assert res.output == f"daq (daq-metrology) {version()}\n"


def daq(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daq.cli", *args], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, **(env or {})}, timeout=60,
                          check=False)


def test_a_services_first_log_line_names_the_version(tmp_path: Path) -> None:
    """Logged before the site file is read, so even a service that cannot start says what it
    is; in JSON when asked."""
    out = daq("--log-format", "json", "ingest", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2
    first = json.loads(out.stderr.splitlines()[0])
    assert first["message"] == f"daq ingest {version()} starting"
    assert (first["level"], first["logger"]) == ("INFO", "daq.ingest")
    out = daq("gateway", str(tmp_path / "missing.yaml"))
    assert re.match(rf"^{ISO} INFO daq\.gateway: daq gateway {re.escape(version())} starting",
                    out.stderr), out.stderr


def test_config_check_prints_the_version() -> None:
    out = daq("config", "check", "daq/data/demo.yaml")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"daq/data/demo.yaml: OK (daq {version()})"


def test_data_dir_option_sets_the_data_directory(tmp_path: Path) -> None:
    """``--data-dir`` is ``$DAQ_HOME`` for the command: here, where ``cert import`` puts the
    default registry."""
    out = daq("--data-dir", str(tmp_path / "d"), "cert", "import",
              "config/calibration/example-records.yaml", "--why", "test",
              env={"DAQ_USER": "t", "DAQ_REGISTRY": "", "DAQ_HOME": str(tmp_path / "no")})
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "d" / "registry.sqlite").is_file()
    assert not (tmp_path / "no").exists()
