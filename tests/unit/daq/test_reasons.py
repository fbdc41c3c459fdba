"""One list of reason codes: daq.model.Reason, repeated in the JSON Schemas of docs/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daq.model import Quality, Reading, Reason, join_reasons, split_reasons

DOCS = Path(__file__).parents[3] / "docs"


def reason_lists(node: Any, path: str = "") -> list[tuple[str, list[str]]]:
    """Every ``enum`` under a key named ``reason`` (or ``reasons``) anywhere in a schema."""
    found: list[tuple[str, list[str]]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("reason", "reasons") and isinstance(value, dict) and "enum" in value:
                found.append((f"{path}/{key}", value["enum"]))
            found += reason_lists(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += reason_lists(value, f"{path}/{i}")
    return found


def test_the_payload_schema_lists_the_reasons_of_the_enum() -> None:
    schema = json.loads((DOCS / "mqtt-payload.schema.json").read_text())
    assert schema["$defs"]["reason"]["enum"] == [r.value for r in Reason]


@pytest.mark.parametrize("path", sorted(DOCS.glob("*.schema.json")), ids=lambda p: p.name)
def test_every_schema_that_lists_reasons_lists_the_enum(path: Path) -> None:
    for where, codes in reason_lists(json.loads(path.read_text())):
        assert codes == [r.value for r in Reason], f"{path.name}{where}"


def test_a_readings_reasons_are_a_list_of_the_enum_in_the_schema() -> None:
    schema = json.loads((DOCS / "mqtt-payload.schema.json").read_text())
    reading = schema["properties"]["polls"]["items"]["properties"]["readings"]["items"]
    assert reading["properties"]["reasons"]["items"] == {"$ref": "#/$defs/reason"}
    joined = join_reasons(list(Reason))
    assert joined is not None
    assert split_reasons(joined) == [r.value for r in Reason]


def test_join_and_split() -> None:
    assert join_reasons([]) is None
    assert join_reasons([Reason.OUT_OF_RANGE, Reason.NOT_CALIBRATED, Reason.OUT_OF_RANGE]) \
        == "out_of_range,not_calibrated"
    assert type(join_reasons([Reason.TIMEOUT])) is str
    assert split_reasons("out_of_range,not_calibrated") == ["out_of_range", "not_calibrated"]
    assert split_reasons(None) == []
    assert split_reasons("") == []


def test_flag_keeps_the_first_reason_first_and_each_once() -> None:
    r = Reading(1, "e", "g", "d", "c", "q", "u", 1.0)
    r.flag(Reason.STUCK)
    r.flag(Reason.NOT_CALIBRATED)
    r.flag(Reason.STUCK)
    assert (r.quality, r.reason) == (Quality.UNCERTAIN, "stuck,not_calibrated")
    bad = Reading(1, "e", "g", "d", "c", "q", "u", None, quality=Quality.BAD, reason="timeout")
    bad.flag(Reason.VERIFICATION_OVERDUE)
    assert (bad.quality, bad.reason) == (Quality.BAD, "timeout,verification_overdue")
