"""The page's alarm-kind filter offers every kind daq.alarms.AlarmKind has (the one list)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from daq.alarms import AlarmKind

APP = Path(__file__).resolve().parents[4] / "gateway" / "dashboard" / "static" / "app.js"


def test_the_alarm_filter_lists_every_kind() -> None:
    m = re.search(r"^const KINDS = (\[.*?\]);$", APP.read_text(encoding="utf-8"), re.M)
    assert m is not None, "app.js has no KINDS list"
    assert json.loads(m.group(1)) == [k.value for k in AlarmKind]
