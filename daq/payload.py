"""MQTT payloads: one JSON message per device per poll, and the retained meta message.

The format is documented with a JSON Schema in ``docs/mqtt-payload.schema.json``. Both the
gateway (encoding) and the ingest (decoding) use this module, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from daq.errors import DaqError
from daq.model import DeviceMeta, Quality, Reading

DATA_SCHEMA = "daq.data/1"
META_SCHEMA = "daq.meta/1"


class PayloadError(DaqError, ValueError):
    """A message on a daq topic that is not a valid daq payload."""


def data_topic(enterprise: str, gateway: str, device: str) -> str:
    return f"daq/{enterprise}/{gateway}/{device}/data"


def meta_topic(enterprise: str, gateway: str, device: str) -> str:
    return f"daq/{enterprise}/{gateway}/{device}/meta"


def status_topic(enterprise: str, gateway: str) -> str:
    return f"daq/{enterprise}/{gateway}/status"


def encode_data(readings: Sequence[Reading], seq: int) -> bytes:
    """Encode the readings of one device poll (all from the same device) as one message."""
    if not readings:
        raise ValueError("a data message needs at least one reading")
    first = readings[0]
    items: list[dict[str, Any]] = []
    for r in readings:
        item: dict[str, Any] = {
            "channel": r.channel,
            "quantity": r.quantity,
            "unit": r.unit,
            "ts": r.ts_ns,
            "value": r.value,
            "raw": r.raw,
            "quality": r.quality.value,
        }
        if r.reason is not None:
            item["reason"] = r.reason
        if r.u is not None and r.k is not None:
            item["u"] = r.u
            item["k"] = r.k
            item["U"] = r.u * r.k
        if r.cert is not None:
            item["cert"] = r.cert
        if r.verification is not None:
            item["verification"] = r.verification
        items.append(item)
    return orjson.dumps(
        {
            "schema": DATA_SCHEMA,
            "enterprise": first.enterprise,
            "gateway": first.gateway,
            "device": first.device,
            "seq": seq,
            "readings": items,
        }
    )


def decode_data(payload: bytes) -> list[Reading]:
    """Decode a data message into readings; raise :class:`PayloadError` if it is not one."""
    try:
        doc = orjson.loads(payload)
        if doc.get("schema") != DATA_SCHEMA:
            raise PayloadError(f"unknown schema {doc.get('schema')!r}")
        ent, gw, dev = doc["enterprise"], doc["gateway"], doc["device"]
        return [
            Reading(
                ts_ns=int(it["ts"]),
                enterprise=ent,
                gateway=gw,
                device=dev,
                channel=it["channel"],
                quantity=it["quantity"],
                unit=it["unit"],
                value=it["value"],
                raw=it.get("raw"),
                quality=Quality(it["quality"]),
                reason=it.get("reason"),
                u=it.get("u"),
                k=it.get("k"),
                cert=it.get("cert"),
                verification=it.get("verification"),
            )
            for it in doc["readings"]
        ]
    except PayloadError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PayloadError(f"not a daq data message: {exc}") from exc


def encode_meta(meta: DeviceMeta) -> bytes:
    return orjson.dumps({"schema": META_SCHEMA, **meta.as_dict()})
