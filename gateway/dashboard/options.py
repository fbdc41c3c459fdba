"""The dashboard's settings, one dataclass shared by the server and its parts."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.energy.accounting import EnergyRules


@dataclass
class DashboardOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    topic: str = "daq/#"
    registry: str | None = None  # calibration registry file, for traceability chains
    token: str | None = None  # required in X-Daq-Token for write actions when set
    read_only: bool = False  # no write actions at all (acknowledging is refused)
    alarm_log: str = "var/dashboard.sqlite"
    tz: str = "Asia/Shanghai"
    energy_channel: str = "energy_import"
    rules: EnergyRules = field(default_factory=lambda: EnergyRules(register_max=999_999.99))
    coefficients: str | None = None  # default: the built-in daq/data/energy-coefficients.yaml
    stale_s: float = 30.0
    push_hz: float = 4.0
    energy_refresh_s: float = 30.0
