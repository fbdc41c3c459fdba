"""A live terminal table of the latest value of every channel, fed from MQTT.

It subscribes like any operator's client would (QoS 0, ``daq/{enterprise}/+/data``), so
what it shows has really gone through the broker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from rich.console import Group
from rich.table import Table
from rich.text import Text

from daq.config import LoadedConfig
from daq.model import Quality, Reading
from daq.payload import PayloadError, decode_unverified
from gateway.mqtt import connect_async, make_client

QUALITY_STYLE = {Quality.GOOD: "green", Quality.UNCERTAIN: "yellow", Quality.BAD: "bold red"}


@dataclass
class Latest:
    reading: Reading
    received_ns: int


class LiveFeed:
    """Keeps the latest reading per (gateway, device, channel) from the broker."""

    def __init__(self, loaded: LoadedConfig, client_id: str) -> None:
        self.loaded = loaded
        self.latest: dict[tuple[str, str, str], Latest] = {}
        self.messages = 0
        self._lock = threading.Lock()
        self.client, props = make_client(loaded, client_id,
                                         login=loaded.config.dashboard.mqtt_login)
        self._props = props
        ent = loaded.config.enterprise.id
        self.topic = f"daq/{ent}/+/data"
        self.client.on_connect = lambda c, *_: c.subscribe(self.topic, qos=0)
        self.client.on_message = self._on_message

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            readings = decode_unverified(bytes(msg.payload), msg.topic).readings
        except PayloadError:
            return
        now = time.time_ns()
        with self._lock:
            self.messages += 1
            for r in readings:
                self.latest[(r.gateway, r.device, r.channel)] = Latest(r, now)

    def start(self) -> None:
        connect_async(self.loaded, self.client, self._props)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def snapshot(self) -> list[Latest]:
        with self._lock:
            return [self.latest[k] for k in sorted(self.latest)]


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1e6 else f"{value:,.1f}"
    return "—" if value is None else str(value)


def render(feed: LiveFeed, footer: Callable[[], str] | None = None) -> Group:
    now = time.time_ns()
    table = Table(title=f"daq live — {feed.loaded.config.enterprise.name or ''}",
                  expand=False, header_style="bold")
    for col, justify in (("device", "left"), ("channel", "left"), ("value", "right"),
                         ("± U", "right"), ("unit", "left"), ("quality", "left"),
                         ("age", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for item in feed.snapshot():
        r = item.reading
        age_s = (now - r.ts_ns) / 1e9
        quality = Text(r.quality.value + (f" ({r.reason})" if r.reason else ""),
                       style=QUALITY_STYLE[r.quality])
        big_u = r.U
        table.add_row(r.device, r.channel, _fmt(r.value),
                      "" if big_u is None else f"{big_u:.2g}", r.unit, quality,
                      Text(f"{age_s:.1f} s", style="red" if age_s > 5 else ""))
    if not feed.latest:
        table.caption = "waiting for the first readings…"
    parts: list[Table | Text] = [table]
    if footer is not None:
        parts.append(Text(footer(), style="dim"))
    return Group(*parts)
