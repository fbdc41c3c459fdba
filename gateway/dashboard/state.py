"""What the dashboard knows about the plant: the latest reading of every channel, each
device's meta and alarms, each gateway's status — fed from MQTT, read by the web views.

Pure state on the event loop's thread (the MQTT thread hands decoded messages over with
``call_soon_threadsafe``). Every change marks what changed; :meth:`LiveState.take_delta`
hands the changes since the last call to the broadcaster, which coalesces them into a few
pushes per second.

Derived per device (recomputed on change and once a second for ages):

* ``status``: ``offline`` (its gateway said offline, or no data for ``stale_s``), ``faulty``
  (an active communication alarm, or a bad reading in its latest poll), else ``online``;
* ``verification``: the worst of its readings' ``verification`` fields and its verification
  alarms: ``overdue`` (``overdue``, ``never_verified``, ``service_life_ended``, alarms
  ``verification_overdue`` / ``service_life_ended``) > ``due_soon`` > ``valid``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from daq.alarms import AlarmKind, AlarmState
from daq.model import Quality, Reading

NS = 1_000_000_000

OVERDUE_MARKS = {"overdue", "never_verified", "service_life_ended"}
OVERDUE_KINDS = {AlarmKind.VERIFICATION_OVERDUE.value, AlarmKind.SERVICE_LIFE_ENDED.value}
RANK = {"valid": 0, "due_soon": 1, "overdue": 2}


def verification_of(mark: str | None) -> str:
    """A reading's ``verification`` field → valid / due_soon / overdue."""
    if mark is None:
        return "valid"
    if mark in OVERDUE_MARKS:
        return "overdue"
    if mark == "due_soon":
        return "due_soon"
    return "overdue"  # an unknown mark is not "in order": show it, do not hide it


def channel_key(ent: str, gw: str, dev: str, ch: str) -> str:
    return f"{ent}/{gw}/{dev}/{ch}"


def device_key(ent: str, gw: str, dev: str) -> str:
    return f"{ent}/{gw}/{dev}"


def alarm_id(dev_key: str, key: str, since_ns: int) -> str:
    """One alarm instance: ``enterprise/gateway/device|key|since``."""
    return f"{dev_key}|{key}|{since_ns}"


def parse_alarm_id(text: str) -> tuple[str, str, int]:
    """``(device key, alarm key, since)`` of :func:`alarm_id`; ValueError if malformed."""
    dev_key, key, since = text.rsplit("|", 2)
    if dev_key.count("/") != 2 or not key:
        raise ValueError(f"not an alarm id: {text!r}")
    return dev_key, key, int(since)


def reading_dict(r: Reading, received_ns: int) -> dict[str, Any]:
    return {
        "key": channel_key(r.enterprise, r.gateway, r.device, r.channel),
        "enterprise": r.enterprise, "gateway": r.gateway, "device": r.device,
        "channel": r.channel, "quantity": r.quantity, "unit": r.unit,
        "value": r.value, "U": r.U, "quality": r.quality.value, "reason": r.reason,
        "ts": r.ts_ns, "received": received_ns, "cert": r.cert,
        "verification": verification_of(r.verification), "verification_mark": r.verification,
    }


@dataclass
class Device:
    enterprise: str
    gateway: str
    device: str
    meta: dict[str, Any] | None = None
    channels: set[str] = field(default_factory=set)
    last_data_ns: int = 0
    bad_in_last_poll: bool = False
    alarms: list[dict[str, Any]] = field(default_factory=list)
    status: str = "offline"
    verification: str = "valid"

    @property
    def key(self) -> str:
        return device_key(self.enterprise, self.gateway, self.device)

    def as_dict(self) -> dict[str, Any]:
        meta = self.meta or {}
        return {
            "key": self.key, "enterprise": self.enterprise, "gateway": self.gateway,
            "device": self.device, "status": self.status, "verification": self.verification,
            "maker": meta.get("maker"), "model": meta.get("model"),
            "profile": meta.get("profile"), "interval_ms": meta.get("interval_ms"),
            "meta_channels": meta.get("channels", []),
            "last_data": self.last_data_ns or None,
            "alarms": self.alarms,
        }


@dataclass
class Delta:
    channels: list[dict[str, Any]]
    devices: list[dict[str, Any]]
    gateways: list[dict[str, Any]]
    events: list[dict[str, Any]]

    def __bool__(self) -> bool:
        return bool(self.channels or self.devices or self.gateways or self.events)

    def as_dict(self) -> dict[str, Any]:
        return {"channels": self.channels, "devices": self.devices, "gateways": self.gateways,
                "events": self.events}


class LiveState:
    """The plant as last reported; see the module docstring."""

    def __init__(self, stale_s: float = 30.0) -> None:
        self.stale_ns = int(stale_s * NS)
        self.channels: dict[str, dict[str, Any]] = {}
        self.devices: dict[str, Device] = {}
        self.gateways: dict[str, dict[str, Any]] = {}  # "ent/gw" → {status, ts}
        self.acks: dict[tuple[str, str, int], dict[str, Any]] = {}  # (device key, key, since)
        self.messages = 0
        self._dirty_ch: set[str] = set()
        self._dirty_dev: set[str] = set()
        self._dirty_gw: set[str] = set()
        self._events: list[dict[str, Any]] = []

    # -- input ----------------------------------------------------------------------------

    def _device(self, ent: str, gw: str, dev: str) -> Device:
        key = device_key(ent, gw, dev)
        d = self.devices.get(key)
        if d is None:
            d = self.devices[key] = Device(ent, gw, dev)
            self._dirty_dev.add(key)
        return d

    def apply_readings(self, readings: list[Reading], received_ns: int) -> None:
        if not readings:
            return
        self.messages += 1
        first = readings[0]
        d = self._device(first.enterprise, first.gateway, first.device)
        d.last_data_ns = max(d.last_data_ns, received_ns)
        d.bad_in_last_poll = any(r.quality is Quality.BAD for r in readings)
        for r in readings:
            rd = reading_dict(r, received_ns)
            self.channels[rd["key"]] = rd
            d.channels.add(r.channel)
            self._dirty_ch.add(rd["key"])
        self._rederive(d, received_ns)

    def apply_meta(self, doc: dict[str, Any]) -> None:
        d = self._device(str(doc["enterprise"]), str(doc["gateway"]), str(doc["device"]))
        d.meta = doc
        self._dirty_dev.add(d.key)

    def apply_status(self, ent: str, gw: str, status: str, now_ns: int) -> None:
        key = f"{ent}/{gw}"
        self.gateways[key] = {"key": key, "enterprise": ent, "gateway": gw, "status": status,
                              "ts": now_ns}
        self._dirty_gw.add(key)
        for d in self.devices.values():
            if d.enterprise == ent and d.gateway == gw:
                self._rederive(d, now_ns)

    def apply_alarms(self, st: AlarmState, now_ns: int) -> None:
        d = self._device(st.enterprise, st.gateway, st.device)
        d.alarms = [self._with_ack(d.key, a.as_dict()) for a in st.alarms]
        for e in st.events:
            self._events.append({"enterprise": st.enterprise, "gateway": st.gateway,
                                 "device": st.device, **e.as_dict()})
        self._dirty_dev.add(d.key)
        self._rederive(d, now_ns)

    def apply_ack(self, dev_key: str, key: str, since_ns: int, ack: dict[str, Any]) -> None:
        self.acks[(dev_key, key, since_ns)] = ack
        d = self.devices.get(dev_key)
        if d is not None:
            d.alarms = [self._with_ack(dev_key, a) for a in d.alarms]
            self._dirty_dev.add(dev_key)

    def _with_ack(self, dev_key: str, alarm: dict[str, Any]) -> dict[str, Any]:
        ack = self.acks.get((dev_key, alarm["key"], alarm["since"]))
        # the instance's id as a string: browsers cannot hold ns timestamps exactly
        return {**alarm, "ack": ack, "id": alarm_id(dev_key, alarm["key"], alarm["since"])}

    def active_alarm(self, dev_key: str, key: str, since_ns: int) -> dict[str, Any] | None:
        d = self.devices.get(dev_key)
        if d is None:
            return None
        return next((a for a in d.alarms if a["key"] == key and a["since"] == since_ns), None)

    # -- derived --------------------------------------------------------------------------

    def _rederive(self, d: Device, now_ns: int) -> None:
        gw = self.gateways.get(f"{d.enterprise}/{d.gateway}")
        kinds = {a["kind"] for a in d.alarms}
        if (gw is not None and gw["status"] == "offline") or not d.last_data_ns \
                or now_ns - d.last_data_ns > self.stale_ns:
            status = "offline"
        elif AlarmKind.COMMUNICATION.value in kinds or d.bad_in_last_poll:
            status = "faulty"
        else:
            status = "online"
        ver = "valid"
        for ch in d.channels:
            rd = self.channels.get(channel_key(d.enterprise, d.gateway, d.device, ch))
            if rd is not None and RANK[rd["verification"]] > RANK[ver]:
                ver = rd["verification"]
        if kinds & OVERDUE_KINDS:
            ver = "overdue"
        elif AlarmKind.VERIFICATION_DUE_SOON.value in kinds and ver == "valid":
            ver = "due_soon"
        if (status, ver) != (d.status, d.verification):
            d.status, d.verification = status, ver
            self._dirty_dev.add(d.key)

    def tick(self, now_ns: int) -> None:
        """Re-derive statuses that depend on time (stale devices)."""
        for d in self.devices.values():
            self._rederive(d, now_ns)

    # -- output ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {"channels": list(self.channels.values()),
                "devices": [d.as_dict() for d in self.devices.values()],
                "gateways": list(self.gateways.values())}

    def take_delta(self) -> Delta:
        delta = Delta(
            channels=[self.channels[k] for k in self._dirty_ch if k in self.channels],
            devices=[self.devices[k].as_dict() for k in self._dirty_dev if k in self.devices],
            gateways=[self.gateways[k] for k in self._dirty_gw if k in self.gateways],
            events=self._events,
        )
        self._dirty_ch, self._dirty_dev, self._dirty_gw, self._events = set(), set(), set(), []
        return delta

    def energy_meters(self, channel: str) -> Iterable[tuple[Device, dict[str, Any]]]:
        """Devices with an energy register ``channel`` (quantity active_energy, from the
        meta or the readings), with that channel's description."""
        for d in self.devices.values():
            chans = {c["id"]: c for c in (d.meta or {}).get("channels", [])}
            desc = chans.get(channel)
            if desc is None:
                rd = self.channels.get(channel_key(d.enterprise, d.gateway, d.device, channel))
                if rd is None:
                    continue
                desc = {"id": channel, "quantity": rd["quantity"], "unit": rd["unit"]}
            if desc.get("quantity") == "active_energy":
                yield d, desc
