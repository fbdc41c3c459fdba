"""Energy accounting for the dashboard: kWh and tonnes of standard coal equivalent per meter
and enterprise, from the energy registers' stored samples (:mod:`gateway.energy.accounting`
does the arithmetic; this module finds the meters, reads their samples and serves the result).

* ``GET /api/energy?step=15min|hour|day|SECONDSs&date=YYYY-MM-DD`` (or ``from``/``to`` in ns);
* ``GET /api/coefficients``: the conversion coefficients (built in:
  ``daq/data/energy-coefficients.yaml``);
* today's totals per enterprise, recomputed every ``energy_refresh_s`` (and at once when a new
  meter appears) and pushed as an ``energy`` event.

A storage that fails (unreachable InfluxDB, a locked or missing historian file) does not
stop the refresh loop: the failure is logged with its traceback once, its recovery once, and
the loop tries again at the next refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web

from daq.config.yamlsrc import load_yaml
from daq.paths import builtin_data
from gateway.dashboard.history import History, HistoryUnavailable, Where
from gateway.dashboard.options import DashboardOptions
from gateway.dashboard.state import LiveState, channel_key, device_key
from gateway.energy.accounting import (
    Coefficient,
    account,
    boundaries,
    enterprise_totals,
    parse_coefficients,
    tce,
)
from gateway.storage.base import StorageError

log = logging.getLogger(__name__)

NS = 1_000_000_000
DEFAULT_COEFFICIENTS = builtin_data("energy-coefficients.yaml")
STEPS = {"15min": 900, "hour": 3600, "day": 86_400}
# what a storage can raise while the energy summary reads it (the history classes turn most
# of it into HistoryUnavailable; the rest is the storage's own contract, files and SQLite)
STORAGE_ERRORS = (HistoryUnavailable, StorageError, OSError, sqlite3.Error)


class EnergyApi:
    def __init__(self, options: DashboardOptions, state: LiveState, history: History,
                 push: Callable[[bytes, bytes], None]) -> None:
        self.options = options
        self.state = state
        self.history = history
        self.push = push  # an SSE event to every browser
        self.coefficients = parse_coefficients(
            load_yaml(options.coefficients or DEFAULT_COEFFICIENTS))
        self.electricity: Coefficient = self.coefficients["electricity"]
        self.today: dict[str, Any] = {"enterprises": {}, "computed": None}
        self._wake = asyncio.Event()
        self._meters = 0
        self._failing = False

    # -- today's summary ------------------------------------------------------------------

    def check_meters(self) -> None:
        """Once a second (from the broadcaster): a new meter gets today's energy at once."""
        meters = sum(1 for _ in self.state.energy_meters(self.options.energy_channel))
        if meters != self._meters:
            self._meters = meters
            self._wake.set()

    async def run(self) -> None:
        """Refresh today's summary every ``energy_refresh_s`` or when woken; a loop for
        :class:`~gateway.dashboard.supervise.Supervised`."""
        while True:
            try:
                await self.refresh()
            except STORAGE_ERRORS:
                if not self._failing:
                    log.exception("energy summary failed (retried every %g s; logged again "
                                  "when it recovers)", self.options.energy_refresh_s)
                self._failing = True
            else:
                if self._failing:
                    log.warning("energy summary recovered")
                self._failing = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.options.energy_refresh_s)
            self._wake.clear()

    async def refresh(self) -> dict[str, Any]:
        """Recompute today's energy per enterprise and push it."""
        start, end = self.day_bounds(None)
        report = await self.report(start, end, STEPS["15min"])
        summary: dict[str, Any] = {"computed": time.time_ns(), "from": start,
                                   "enterprises": {}, "error": report.get("error")}
        for ent, e in report["enterprises"].items():
            summary["enterprises"][ent] = {
                "kwh": e["register_kwh"], "tce": e["register_tce"],
                "completeness": e["completeness"], "meters": e["meters"]}
        self.today = summary
        self.push(b"energy", orjson.dumps(summary))
        return summary

    # -- HTTP -----------------------------------------------------------------------------

    async def api_energy(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            step_txt = q.get("step", "15min")
            step = STEPS[step_txt] if step_txt in STEPS else int(step_txt.rstrip("s"))
            if "from" in q and "to" in q:
                start, end = int(q["from"]), int(q["to"])
            else:
                start, end = self.day_bounds(q.get("date"))
            report = await self.report(start, end, step)
        except (ValueError, KeyError) as exc:
            raise web.HTTPBadRequest(text=f"energy: {exc}") from None
        return web.Response(body=orjson.dumps(report), content_type="application/json")

    async def api_coefficients(self, _r: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps([c.as_dict() for c in
                                               self.coefficients.values()]),
                            content_type="application/json")

    # -- the report -----------------------------------------------------------------------

    def day_bounds(self, date: str | None) -> tuple[int, int]:
        zone = ZoneInfo(self.options.tz)
        day = (dt.date.fromisoformat(date) if date
               else dt.datetime.now(zone).date())
        start = dt.datetime.combine(day, dt.time(), zone)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
        return int(start.timestamp()) * NS, int(end.timestamp()) * NS

    async def report(self, start: int, end: int, step_s: int) -> dict[str, Any]:
        meters = [(Where(d.enterprise, d.gateway, d.device, desc["id"],
                         str(desc.get("quantity", "active_energy"))), str(desc.get("unit")),
                   (d.meta or {}).get("instrument"))
                  for d, desc in self.state.energy_meters(self.options.energy_channel)]
        return await asyncio.to_thread(self._report, meters, start, end, step_s)

    def _measurement_levels(self) -> dict[str, str]:
        """Instrument id → GB 17167 measurement level, from the registry (if configured)."""
        from calibration.records import Instrument
        from calibration.registry import Registry, RegistryError

        if self.options.registry is None:
            return {}
        try:
            with Registry(self.options.registry, create=False, read_only=True) as reg:
                return {i.id: i.measurement_level for i in reg.list("instrument")
                        if isinstance(i, Instrument) and i.measurement_level is not None}
        except (RegistryError, OSError, ValueError) as exc:
            log.warning("dashboard: measurement levels unavailable: %s", exc)
            return {}

    def _report(self, meters: list[tuple[Where, str, str | None]], start: int,
                end: int, step_s: int) -> dict[str, Any]:
        now = time.time_ns()
        edges = [e for e in boundaries(start, end, step_s, self.options.tz)
                 if start <= e <= min(end, now)]
        rules = self.options.rules
        margin = int(rules.max_interpolate_s * NS)
        el = self.electricity
        out: dict[str, Any] = {"from": start, "to": end, "step_s": step_s,
                               "tz": self.options.tz, "edges": edges,
                               "coefficient": el.as_dict(), "meters": [],
                               "enterprises": {}, "error": None}
        levels = self._measurement_levels()
        for w, unit, instrument in sorted(meters, key=lambda m: (m[0].enterprise, m[0].device)):
            factor = {"kWh": 1.0, "Wh": 1e-3, "MWh": 1e3}.get(unit)
            if factor is None:
                continue  # not an electrical energy register in a unit we know
            try:
                samples = self.history.samples(w, start - margin, min(end, now) + margin)
            except HistoryUnavailable as exc:
                out["error"] = str(exc)
                break
            if factor != 1.0:
                samples = [type(s)(s.ts_ns, s.value * factor) for s in samples]
            if len(edges) >= 2:
                series = account(samples, edges, rules).as_dict()
            else:  # too early in the range for one whole interval
                series = account(samples, [start, max(start + 1, min(end, now))],
                                 rules).as_dict()
                series["intervals"] = []
                series["expected"] = series["received"] = 0
                series["completeness"] = 0.0
                series["allocated_kwh"] = 0.0
            series.update({"enterprise": w.enterprise, "gateway": w.gateway,
                           "device": w.device, "channel": w.channel,
                           "key": channel_key(w.enterprise, w.gateway, w.device, w.channel),
                           "device_key": device_key(w.enterprise, w.gateway, w.device),
                           "allocated_tce": tce(series["allocated_kwh"], el),
                           "register_tce": (None if series["register_kwh"] is None
                                            else tce(series["register_kwh"], el)),
                           "instrument": instrument,
                           "measurement_level": levels.get(instrument or "")})
            out["meters"].append(series)
        out["enterprises"] = enterprise_totals(out["meters"], max(0, len(edges) - 1))
        for ent in out["enterprises"].values():
            ent["allocated_tce"] = tce(ent["allocated_kwh"], el)
            ent["register_tce"] = tce(ent["register_kwh"], el)
        return out
