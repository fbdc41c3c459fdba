"""What a message from the wire may hold: the checks every decoder of untrusted input shares.

A message on a ``daq/…`` topic may come from a broken gateway, an old version or anyone who
can reach the broker. Before anything of it reaches storage or a web page, each field is
checked for its type, its length and its range; a check that fails raises
:class:`WireValueError` (a ``ValueError``) naming the field, which the decoders turn into
their own error (``PayloadError``, ``AlarmPayloadError``). Hand-written rather than a JSON
Schema validator: these few checks cost well under a microsecond per reading, a schema
validator tens of microseconds.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

import orjson

from daq.errors import DaqError

__all__ = [
    "MAX_FUTURE_S",
    "MAX_ITEMS",
    "MAX_PAYLOAD_BYTES",
    "MAX_TEXT",
    "TS_MIN_NS",
    "WireValueError",
    "check_id",
    "check_name",
    "check_number",
    "check_text",
    "check_ts",
    "load_message",
    "ts_limit_ns",
]

MAX_PAYLOAD_BYTES = 1 << 20  # one message; a device poll is a few kB
MAX_ITEMS = 10_000  # readings, alarms or events in one message
MAX_TEXT = 256  # characters of any string field (reasons, units, certificate ids)
MAX_FUTURE_S = 24 * 3600  # a timestamp this far ahead of the receiver's clock is refused
TS_MIN_NS = 946_684_800 * 10**9  # 2000-01-01T00:00:00Z: earlier is a clock that was never set
_INT64 = 1 << 63

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# channel ids (profiles: letters, digits, _ . -) and alarm keys (kind:channel)
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


class WireValueError(DaqError, ValueError):
    """A field of a message from the wire is not what the format allows."""


def check_id(value: Any, field: str) -> str:
    """An enterprise, gateway or device id: what may stand in a topic level."""
    if type(value) is not str or _ID.fullmatch(value) is None:
        raise WireValueError(f"{field}: not an id (A-Z a-z 0-9 _ -, 1–64 characters): "
                             f"{_show(value)}")
    return value


def check_name(value: Any, field: str) -> str:
    """A channel id, quantity or alarm key."""
    if type(value) is not str or _NAME.fullmatch(value) is None:
        raise WireValueError(f"{field}: not a name (A-Z a-z 0-9 _ . : -, 1–128 characters): "
                             f"{_show(value)}")
    return value


def check_text(value: Any, field: str, *, optional: bool = False) -> str | None:
    """A short free text (unit, reason, certificate id): a string of at most MAX_TEXT
    characters without control characters."""
    if value is None and optional:
        return None
    if type(value) is not str or len(value) > MAX_TEXT or not value.isprintable():
        raise WireValueError(f"{field}: not a text of at most {MAX_TEXT} printable "
                             f"characters: {_show(value)}")
    return value


def check_number(value: Any, field: str, *, optional: bool = False, minimum: float | None = None,
                 text: bool = False) -> float | int | str | None:
    """A finite number (an int within 64 bits); with ``text``, a short string too."""
    t = type(value)
    if t is float:
        if not math.isfinite(value):
            raise WireValueError(f"{field}: not finite")
    elif t is int:
        if not -_INT64 <= value < _INT64:
            raise WireValueError(f"{field}: integer out of 64-bit range")
    elif value is None and optional:
        return None
    elif t is str and text:
        return check_text(value, field)
    else:
        raise WireValueError(f"{field}: not a number: {_show(value)}")
    if minimum is not None and value < minimum:
        raise WireValueError(f"{field}: {value!r} is below {minimum}")
    return value  # type: ignore[no-any-return]


def ts_limit_ns(now_ns: int | None = None) -> int:
    """The latest timestamp accepted now (the receiver's clock plus MAX_FUTURE_S)."""
    return (time.time_ns() if now_ns is None else now_ns) + MAX_FUTURE_S * 10**9


def check_ts(value: Any, field: str, limit_ns: int) -> int:
    """A timestamp in nanoseconds since the epoch, from 2000 up to ``limit_ns``."""
    if type(value) is not int or not TS_MIN_NS <= value <= limit_ns:
        raise WireValueError(f"{field}: not a timestamp between 2000-01-01 and a day ahead of "
                             f"now, in ns: {_show(value)}")
    return value


def load_message(payload: bytes, schema: str) -> dict[str, Any]:
    """A message's JSON object, checked for its size, its shape and its ``schema`` field."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireValueError(f"message of {len(payload)} bytes (at most {MAX_PAYLOAD_BYTES})")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise WireValueError(f"not JSON: {exc}") from exc
    if type(doc) is not dict:
        raise WireValueError("not a JSON object")
    if doc.get("schema") != schema:
        raise WireValueError(f"unknown schema {str(doc.get('schema'))[:40]!r}")
    return doc


def _show(value: Any) -> str:
    """A short, safe rendering of a bad value for an error message and a log line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
