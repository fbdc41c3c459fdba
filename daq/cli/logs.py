"""The command line's logging: ISO 8601 timestamps with the date and the UTC offset, as text
for people (``2026-11-29T21:40:08.123+00:00 WARNING gateway.x: message``) or as one JSON
object per line for log collectors (``--log-format json``: ``ts``, ``level``, ``logger``,
``message``, and ``exc_info`` with the traceback's text when there is one)."""

from __future__ import annotations

import datetime as dt
import json
import logging

__all__ = ["JsonFormatter", "TextFormatter", "iso_time", "service_started", "setup_logging"]

SERVICE_LEVEL = logging.INFO  # a service's log says what it does: start, connect, recover


def iso_time(record: logging.LogRecord) -> str:
    """The record's time in the local zone, with milliseconds and the UTC offset."""
    return dt.datetime.fromtimestamp(record.created).astimezone().isoformat(
        timespec="milliseconds")


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_time(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a multi-line message or traceback stays on its line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, str] = {"ts": iso_time(record), "level": record.levelname,
                               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(verbose: int, log_format: str = "text") -> None:
    """The root logger: WARNING, INFO with ``-v``, DEBUG with ``-vv``, to stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=logging.WARNING - 10 * verbose, handlers=[handler])
    # pymodbus logs every timeout at error level; our poller says it once per device instead
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL)


def service_started(name: str) -> None:
    """A service's first log line: what runs, which version; the service logs at INFO at
    least from here on (``-vv`` still gives DEBUG)."""
    from daq.paths import version

    root = logging.getLogger()
    root.setLevel(min(root.level, SERVICE_LEVEL))
    logging.getLogger(f"daq.{name}").info("daq %s %s starting", name, version())
