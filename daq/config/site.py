"""The site configuration: one YAML file for an enterprise, its gateways, buses, devices,
MQTT and storage. Validated by pydantic v2 with unknown keys refused.

Errors are collected, never raised one at a time: :func:`load_config` raises
:class:`~daq.config.yamlsrc.SourceErrors` whose lines read ``FILE:LINE: field.path: message``.
Secrets come from ``${ENV_VAR}`` substitution or ``*_file`` fields, and are ``SecretStr`` so
they never print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from daq.config.profiles import (
    AnyProfile,
    InstrumentProfile,
    Profile,
    available_profiles,
    find_profile,
    load_profile_file,
    profile_dirs,
)
from daq.config.yamlsrc import Located, SourceError, SourceErrors, load_yaml, validated
from daq.errors import DaqError

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Enterprise(_Strict):
    id: Id
    name: str = ""


class _DeviceBase(_Strict):
    id: Id
    profile: str
    interval_ms: Annotated[int, Field(ge=10, le=86_400_000)] = 1000
    failures_before_backoff: Annotated[int, Field(ge=1)] = 3
    max_backoff_s: Annotated[float, Field(gt=0)] = 60.0
    # flag readings uncertain ("stuck") when every value of this many polls in a row is
    # identical — a frozen meter or converter; off by default (a quiet instrument is not stuck)
    stuck_after: Annotated[int, Field(ge=2)] | None = None
    description: str = ""
    # the registry's instrument this device is (e.g. an energy meter under mandatory
    # verification): its verification status applies to every reading of the device
    instrument: Annotated[str, Field(min_length=1)] | None = None
    # channel id -> id of the instrument in the calibration registry whose certificate
    # corrects that channel's readings (needs `calibration.registry`)
    instruments: dict[str, Annotated[str, Field(min_length=1)]] = {}


class Device(_DeviceBase):
    """A Modbus device (unit) on a bus."""

    unit_id: Annotated[int, Field(ge=0, le=255)] = 1
    max_gap: Annotated[int, Field(ge=0, le=125)] = 16
    max_registers: Annotated[int, Field(ge=1, le=125)] = 125
    pause_between_requests_ms: Annotated[int, Field(ge=0)] = 0
    # some meters refuse reads that span several values: one request per channel
    one_request_per_channel: bool = False


class Dlt645Device(_DeviceBase):
    """A DL/T 645-2007 meter on a line, by its 12-digit address (nameplate order)."""

    address: Annotated[str, Field(pattern=r"^[0-9]{12}$")]


class InstrumentDevice(_DeviceBase):
    """A laboratory instrument (its profile says which dialect it speaks)."""


AnyDevice = Device | Dlt645Device | InstrumentDevice


class SerialLine(_Strict):
    """A serial line: the port (``/dev/ttyUSB0``, ``/dev/serial/by-id/…``) and its settings."""

    port: str
    baudrate: Annotated[int, Field(gt=0)] = 9600
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    def describe(self) -> str:
        return f"{self.port} {self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


class ModbusTcpBus(_Strict):
    id: Id
    protocol: Literal["modbus-tcp"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    timeout_ms: Annotated[int, Field(ge=1)] = 1000
    retries_on_busy: Annotated[int, Field(ge=0)] = 0
    pause_after_connect_ms: Annotated[int, Field(ge=0)] = 0
    devices: list[Device]

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


class _RtuOptions(_Strict):
    timeout_ms: Annotated[int, Field(ge=1)] = 1000
    min_gap_ms: Annotated[float, Field(ge=0)] | None = None  # default: 3.5 characters
    retries_on_busy: Annotated[int, Field(ge=0)] = 0
    pause_after_connect_ms: Annotated[int, Field(ge=0)] = 0


class ModbusRtuBus(_RtuOptions):
    """Modbus RTU on a serial line (RS-485): several unit ids, one transaction at a time."""

    id: Id
    protocol: Literal["modbus-rtu"]
    serial: SerialLine
    devices: list[Device]

    @property
    def endpoint(self) -> str:
        return self.serial.describe()


class ModbusRtuTcpBus(_RtuOptions):
    """Modbus RTU frames over TCP to a serial-to-Ethernet converter in transparent mode."""

    id: Id
    protocol: Literal["modbus-rtu-tcp"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)]
    serial: SerialLine | None = None  # the converter's line, for frame-gap timing
    devices: list[Device]

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port} (RTU)"


class Dlt645TcpBus(_Strict):
    """DL/T 645 meters on an RS-485 line behind a serial-to-Ethernet converter."""

    id: Id
    protocol: Literal["dlt645-tcp"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)]
    timeout_ms: Annotated[int, Field(ge=1)] = 1000
    wakeup_bytes: Annotated[int, Field(ge=0, le=4)] = 4
    min_gap_ms: Annotated[int, Field(ge=0)] = 0
    devices: list[Dlt645Device]

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


class Dlt645SerialBus(_Strict):
    """DL/T 645 meters on an RS-485 line attached to this computer (2400 8E1 is common)."""

    id: Id
    protocol: Literal["dlt645-serial"]
    serial: SerialLine
    timeout_ms: Annotated[int, Field(ge=1)] = 1000
    wakeup_bytes: Annotated[int, Field(ge=0, le=4)] = 4
    min_gap_ms: Annotated[int, Field(ge=0)] = 20
    devices: list[Dlt645Device]

    @property
    def endpoint(self) -> str:
        return self.serial.describe()


class InstrumentBus(_Strict):
    """An instrument's own link: a serial port (``serial``) or a TCP port (``host``/``port``,
    e.g. a LAN instrument or a serial server)."""

    id: Id
    protocol: Literal["instrument"]
    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    serial: SerialLine | None = None
    timeout_ms: Annotated[int, Field(ge=1)] = 2000
    devices: Annotated[list[InstrumentDevice], Field(min_length=1, max_length=1)]

    @model_validator(mode="after")
    def _one_link(self) -> InstrumentBus:
        if (self.serial is None) == (self.host is None or self.port is None):
            raise ValueError("give either 'serial' or both 'host' and 'port'")
        return self

    @property
    def endpoint(self) -> str:
        if self.serial is not None:
            return self.serial.describe()
        return f"{self.host}:{self.port}"


AnyBus = (ModbusTcpBus | ModbusRtuBus | ModbusRtuTcpBus | Dlt645TcpBus | Dlt645SerialBus
          | InstrumentBus)
Bus = Annotated[AnyBus, Field(discriminator="protocol")]
DLT645_BUSES = (Dlt645TcpBus, Dlt645SerialBus)


ChannelRef = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+/[A-Za-z0-9_.-]+$")]


class Ewma(_Strict):
    lambda_: Annotated[float, Field(gt=0, le=1, alias="lambda")] = 0.05
    L: Annotated[float, Field(gt=0)] = 6.0


class Cusum(_Strict):
    k: Annotated[float, Field(ge=0)] = 0.5
    h: Annotated[float, Field(gt=0)] = 16.0


class DriftCheck(_Strict):
    """Watch ``channel`` − ``reference`` (a check standard or a redundant channel, both
    ``device/channel`` of this gateway, in the same unit) with EWMA and CUSUM detectors."""

    channel: ChannelRef
    reference: ChannelRef
    mean: float | None = None  # in-control mean and σ of the difference; both or neither
    sigma: Annotated[float, Field(gt=0)] | None = None
    warmup: Annotated[int, Field(ge=2)] = 1800  # samples to learn mean and σ otherwise
    ewma: Ewma = Ewma()
    cusum: Cusum = Cusum()
    max_skew_ms: Annotated[int, Field(ge=0)] = 2000  # pair only with a reading this fresh

    @model_validator(mode="after")
    def _both_or_neither(self) -> DriftCheck:
        if (self.mean is None) != (self.sigma is None):
            raise ValueError("give both mean and sigma, or neither (learned in the warm-up)")
        if self.channel == self.reference:
            raise ValueError("a channel cannot be its own reference")
        return self


class Delivery(_Strict):
    """How the gateway sends its outbox (docs/mqtt.md, "End-to-end acknowledgement")."""

    # stored: a row leaves the outbox when storage confirms it (daq.ack/1), the default;
    # broker: when the broker's PUBACK arrives (for a site whose consumer is not daq's ingest)
    confirm: Literal["stored", "broker"] = "stored"
    ack_timeout_s: Annotated[float, Field(gt=0)] = 30.0  # resend what storage has not confirmed
    max_unconfirmed: Annotated[int, Field(ge=1, le=100_000)] = 200  # messages in flight
    max_rate: Annotated[float, Field(gt=0)] = 500.0  # messages per second, replays included
    batch_max_readings: Annotated[int, Field(ge=1, le=10_000)] = 2000  # per message


# an MQTT username as Mosquitto's password and ACL files can hold it: no spaces, no ':'
Username = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@-]+$", max_length=64)]


class MqttLogin(_Strict):
    """One MQTT account of the site's broker (``daq broker access`` writes them all into the
    broker's password and ACL files): a username and its password, given inline (usually
    ``${ENV}``) or in a file (first line)."""

    username: Username
    password: SecretStr | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _one_password(self) -> MqttLogin:
        if (self.password is None) == (self.password_file is None):
            raise ValueError("give password or password_file (one of them)")
        return self


class Gateway(_Strict):
    id: Id
    outbox: str = "var/{gateway}-outbox.sqlite"
    # the outbox's cap (docs/durability.md, "A full or read-only disk"): beyond it the oldest
    # rows without legal readings are dropped (counted, logged, alarmed); legal ones never are
    outbox_max_mb: Annotated[float, Field(gt=0)] | None = None
    outbox_max_age_h: Annotated[float, Field(gt=0)] | None = None
    # readings held in memory while the outbox cannot be written; beyond, the oldest are lost
    # (counted, logged, alarmed)
    outbox_hold_readings: Annotated[int, Field(ge=0, le=10_000_000)] = 200_000
    # the gateway's Ed25519 private key (PEM); made at first start when missing. Its public
    # key must be pinned in the ingest's registry (daq keys pin)
    signing_key: str = "var/{gateway}-signing.key"
    delivery: Delivery = Delivery()
    buses: list[Bus]
    drift_checks: list[DriftCheck] = []
    # this gateway's own account: it may publish only under daq/{enterprise}/{gateway}/#
    mqtt_login: MqttLogin | None = None


class Calibration(_Strict):
    """Where the gateway finds certificates for the channels that name an instrument."""

    registry: str = "var/registry.sqlite"
    reload_s: Annotated[float, Field(gt=0)] = 5.0  # how often to look for registry changes
    verification_window_days: Annotated[int, Field(ge=0)] = 30  # "due soon" window
    verification_periods: str | None = None  # its types override the built-in periods'


class Tls(_Strict):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False  # skip hostname verification (never the default)


class Mqtt(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password: SecretStr | None = None
    password_file: str | None = None
    tls: Tls | None = None
    keepalive_s: Annotated[int, Field(ge=5)] = 30
    client_id_prefix: str = "daq"

    @model_validator(mode="after")
    def _one_password(self) -> Mqtt:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self


class Ingest(_Strict):
    subscription: str = "daq/#"  # or a shared subscription: $share/ingest/daq/#
    client_id: str | None = None  # fixed id = persistent session across restarts
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5000
    batch_interval_ms: Annotated[int, Field(ge=1)] = 200
    spool: str = "var/ingest-spool.sqlite"
    # batches the storage refuses for good (HTTP 4xx: type conflict, unknown database) go
    # here for a person to look at, instead of blocking the spool forever
    dead_letter: str = "var/ingest-rejected.sqlite"
    # the gateways' public keys are pinned in this registry (default: calibration.registry,
    # else var/registry.sqlite);
    # a message not signed by a pinned, unrevoked key of its gateway is never stored
    registry: str | None = None
    require_signatures: bool = True
    # signed messages kept as evidence: of instruments under legal control (readings with a
    # verification state or a certificate), all of them, or none
    evidence: Literal["legal", "all", "none"] = "legal"
    evidence_store: str = "var/ingest-evidence.sqlite"
    # the ingest's own account: reads daq/{enterprise}/#, writes the acknowledgement topics
    mqtt_login: MqttLogin | None = None


class Dashboard(_Strict):
    """The web dashboard's part of the site file (its other options are command-line)."""

    # the dashboard's own account: reads daq/{enterprise}/#, writes nothing
    mqtt_login: MqttLogin | None = None


class Historian(_Strict):
    kind: Literal["historian"]
    path: str = "var/historian.sqlite"


class InfluxV1(_Strict):
    kind: Literal["influxdb_v1"]
    url: str = "http://127.0.0.1:8086"
    database: str = "daq"
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: str | None = None
    create_database: bool = True
    ca_file: str | None = None
    timeout_s: float = 10.0


class InfluxV2(_Strict):
    kind: Literal["influxdb_v2"]
    url: str = "http://127.0.0.1:8086"
    org: str = "daq"
    bucket: str = "daq"
    token: SecretStr | None = None
    token_file: str | None = None
    ca_file: str | None = None
    timeout_s: float = 10.0


Storage = Annotated[Historian | InfluxV1 | InfluxV2, Field(discriminator="kind")]


class Config(_Strict):
    enterprise: Enterprise
    profile_dirs: list[str] = []
    calibration: Calibration | None = None
    gateways: list[Gateway]
    mqtt: Mqtt = Mqtt()
    ingest: Ingest = Ingest()
    dashboard: Dashboard = Dashboard()
    storage: Storage = Historian(kind="historian")


class UnknownGatewayError(DaqError, KeyError):
    """A gateway id (``--gateway``) the site file does not have."""

    def __str__(self) -> str:  # a KeyError would print its message in quotes
        return str(self.args[0])


@dataclass
class LoadedConfig:
    """A validated config with its profiles resolved and relative paths anchored."""

    path: Path
    config: Config
    profiles: dict[str, AnyProfile] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, p: str) -> Path:
        """A path from the config, relative to the config file's directory."""
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.base_dir / q

    def modbus_profile(self, name: str) -> Profile:
        profile = self.profiles[name]
        assert isinstance(profile, Profile)
        return profile

    def gateway(self, gateway_id: str | None = None) -> Gateway:
        gws = self.config.gateways
        if gateway_id is None:
            return gws[0]
        for gw in gws:
            if gw.id == gateway_id:
                return gw
        raise UnknownGatewayError(f"no gateway {gateway_id!r} in {self.path} (gateways: "
                                  f"{', '.join(gw.id for gw in gws) or 'none'})")

    def signing_key_path(self, gw: Gateway) -> Path:
        return self.resolve(gw.signing_key.format(gateway=gw.id))

    def keys_registry(self) -> Path:
        """The registry that pins the gateways' keys: ingest.registry, else
        calibration.registry, else var/registry.sqlite (beside the site file)."""
        path = self.config.ingest.registry or (
            self.config.calibration.registry if self.config.calibration else None)
        return self.resolve(path or "var/registry.sqlite")

    def devices(self) -> list[tuple[Gateway, AnyBus, AnyDevice]]:
        return [(gw, bus, dev) for gw in self.config.gateways for bus in gw.buses
                for dev in bus.devices]

    def secret(self, value: SecretStr | None, file: str | None) -> str | None:
        """A secret given inline (usually via ``${ENV}``) or in a file (first line)."""
        if value is not None:
            return value.get_secret_value()
        if file is not None:
            return self.resolve(file).read_text(encoding="utf-8").strip()
        return None


def load_config(path: str | Path) -> LoadedConfig:
    """Load and validate a config file; raise SourceErrors listing every problem."""
    return load_config_located(path)[0]


def load_config_located(path: str | Path) -> tuple[LoadedConfig, Located]:
    """:func:`load_config`, and the file's data with the line of every field (for checks of
    their own that name ``FILE:LINE: field``)."""
    path = Path(path)
    loc = load_yaml(path)
    cfg = validated(Config, loc)
    loaded = LoadedConfig(path, cfg)
    errors = _check_ids(cfg, loc) + _load_profiles(loaded, loc)
    if not errors:
        errors = _check_drift_refs(loaded, loc)
    if errors:
        raise SourceErrors(errors)
    return loaded, loc


def _check_ids(cfg: Config, loc: Located) -> list[SourceError]:
    errors: list[SourceError] = []
    seen_gw: set[str] = set()
    seen_dev: dict[str, str] = {}
    for gi, gw in enumerate(cfg.gateways):
        if gw.id in seen_gw:
            errors.append(loc.error(("gateways", gi, "id"), f"duplicate gateway id {gw.id!r}"))
        seen_gw.add(gw.id)
        seen_bus: set[str] = set()
        for bi, bus in enumerate(gw.buses):
            if bus.id in seen_bus:
                errors.append(loc.error(("gateways", gi, "buses", bi, "id"),
                                        f"duplicate bus id {bus.id!r}"))
            seen_bus.add(bus.id)
            for di, dev in enumerate(bus.devices):
                where = ("gateways", gi, "buses", bi, "devices", di, "id")
                if dev.id in seen_dev:
                    errors.append(loc.error(where, f"duplicate device id {dev.id!r} "
                                            f"(first at line {seen_dev[dev.id]})"))
                else:
                    seen_dev[dev.id] = str(loc.line_of(where))
    return errors


def _load_profiles(loaded: LoadedConfig, loc: Located) -> list[SourceError]:
    errors: list[SourceError] = []
    dirs = profile_dirs(loaded.resolve(d) for d in loaded.config.profile_dirs)
    for gi, gw in enumerate(loaded.config.gateways):
        for bi, bus in enumerate(gw.buses):
            for di, dev in enumerate(bus.devices):
                where = ("gateways", gi, "buses", bi, "devices", di, "profile")
                wanted = ("dlt645" if isinstance(bus, DLT645_BUSES)
                          else "instrument" if isinstance(bus, InstrumentBus) else "modbus")
                profile = loaded.profiles.get(dev.profile)
                if profile is None:
                    found = find_profile(dev.profile, dirs)
                    if found is None:
                        names = ", ".join(available_profiles(dirs)) or "none found"
                        errors.append(loc.error(where, f"unknown profile {dev.profile!r} "
                                                f"(known: {names})"))
                        continue
                    try:
                        profile = load_profile_file(found)
                    except SourceErrors as exc:
                        errors.extend(exc.errors)
                        continue
                    loaded.profiles[dev.profile] = profile
                speaks = "instrument" if isinstance(profile, InstrumentProfile) else \
                    profile.protocol
                if speaks != wanted:
                    errors.append(loc.error(where, f"profile {dev.profile!r} is for "
                                            f"{profile.protocol}, this bus speaks {wanted}"))
                channels = {ch.id for ch in profile.channels}
                for ch_id in dev.instruments:
                    if ch_id not in channels:
                        errors.append(loc.error(
                            (*where[:-1], "instruments", ch_id),
                            f"profile {dev.profile!r} has no channel {ch_id!r} "
                            f"(channels: {', '.join(sorted(channels))})"))
                if loaded.config.calibration is None:
                    for field_ in ("instruments", "instrument"):
                        if getattr(dev, field_):
                            errors.append(loc.error(
                                (*where[:-1], field_), f"`{field_}` names the calibration "
                                "registry, but the config has no `calibration: {registry: …}` "
                                "section"))
    return errors


def _check_drift_refs(loaded: LoadedConfig, loc: Located) -> list[SourceError]:
    errors: list[SourceError] = []
    for gi, gw in enumerate(loaded.config.gateways):
        known = {f"{dev.id}/{ch.id}" for bus in gw.buses for dev in bus.devices
                 for ch in loaded.profiles[dev.profile].channels}
        for ci, check in enumerate(gw.drift_checks):
            for field_ in ("channel", "reference"):
                ref = getattr(check, field_)
                if ref not in known:
                    errors.append(loc.error(("gateways", gi, "drift_checks", ci, field_),
                                            f"no channel {ref!r} on gateway {gw.id!r}"))
    return errors


__all__ = [
    "AnyBus",
    "AnyDevice",
    "Bus",
    "Calibration",
    "Config",
    "Cusum",
    "Dashboard",
    "Delivery",
    "Device",
    "Dlt645Device",
    "Dlt645SerialBus",
    "Dlt645TcpBus",
    "DriftCheck",
    "Enterprise",
    "Ewma",
    "Gateway",
    "Historian",
    "InfluxV1",
    "InfluxV2",
    "Ingest",
    "InstrumentBus",
    "InstrumentDevice",
    "LoadedConfig",
    "ModbusRtuBus",
    "ModbusRtuTcpBus",
    "ModbusTcpBus",
    "Mqtt",
    "MqttLogin",
    "SerialLine",
    "Tls",
    "UnknownGatewayError",
    "load_config",
    "load_config_located",
]
