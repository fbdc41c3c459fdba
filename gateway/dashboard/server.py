"""The dashboard's web server: aiohttp (one dependency for HTTP and Server-Sent Events),
the page and its assets from the package (no CDN), a JSON API and an SSE stream.

The server subscribes to MQTT like any operator's client (paho, QoS 0, ``daq/#`` by
default), keeps :class:`~gateway.dashboard.state.LiveState`, and a broadcaster task pushes
what changed to every browser at most ``push_hz`` times a second (one coalesced ``delta``
event per tick, the same bytes for every client). A client that falls behind (its queue of
pushes full) gets a fresh ``snapshot`` instead of the backlog.

Write actions (acknowledging alarms) need the token of ``DAQ_DASHBOARD_TOKEN`` /
``--token-file`` in the ``X-Daq-Token`` header when one is set. The server binds to
127.0.0.1 by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import html
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import paho.mqtt.client as mqtt
from aiohttp import web

from daq.alarms import AlarmPayloadError, decode_alarms
from daq.config import LoadedConfig
from daq.config.yamlsrc import load_yaml
from daq.payload import PayloadError, decode_data
from gateway.dashboard.alarmlog import AlarmLog
from gateway.dashboard.history import History, HistoryUnavailable, Where, open_history
from gateway.dashboard.state import LiveState, channel_key, device_key, parse_alarm_id
from gateway.energy.accounting import (
    Coefficient,
    EnergyRules,
    account,
    boundaries,
    enterprise_totals,
    parse_coefficients,
    tce,
)
from gateway.mqtt import connect_async, make_client, unique_client_id

log = logging.getLogger(__name__)

NS = 1_000_000_000
STATIC = Path(__file__).resolve().parent / "static"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_COEFFICIENTS = REPO / "config" / "energy-coefficients.yaml"
STEPS = {"15min": 900, "hour": 3600, "day": 86_400}


@dataclass
class DashboardOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    topic: str = "daq/#"
    registry: str | None = None  # calibration registry file, for traceability chains
    token: str | None = None  # required in X-Daq-Token for write actions when set
    alarm_log: str = "var/dashboard.sqlite"
    tz: str = "Asia/Shanghai"
    energy_channel: str = "energy_import"
    rules: EnergyRules = field(default_factory=lambda: EnergyRules(register_max=999_999.99))
    coefficients: str | None = None  # default: config/energy-coefficients.yaml
    stale_s: float = 30.0
    push_hz: float = 4.0
    energy_refresh_s: float = 30.0


class Dashboard:
    """The dashboard server. ``await start()`` → the port bound; ``await stop()``."""

    def __init__(self, loaded: LoadedConfig, options: DashboardOptions) -> None:
        self.loaded = loaded
        self.options = options
        ZoneInfo(options.tz)  # refuse an unknown zone at start, not at the first request
        self.state = LiveState(options.stale_s)
        self.alarm_log = AlarmLog(options.alarm_log)
        for dev_key, key, since, ack in self.alarm_log.acks():
            self.state.apply_ack(dev_key, key, since, ack)
        self.history: History = open_history(loaded)
        coeff_path = options.coefficients or DEFAULT_COEFFICIENTS
        self.coefficients = parse_coefficients(load_yaml(coeff_path))
        self.electricity: Coefficient = self.coefficients["electricity"]
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self.energy_today: dict[str, Any] = {"enterprises": {}, "computed": None}
        self.port = options.port
        self.pushes = 0
        self._energy_wake = asyncio.Event()
        self._energy_meters = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> int:
        self._loop = asyncio.get_running_loop()
        app = web.Application()
        app.add_routes([
            web.get("/", self._index),
            web.get("/api/state", self._api_state),
            web.get("/api/events", self._api_events),
            web.get("/api/trend", self._api_trend),
            web.get("/api/alarms", self._api_alarms),
            web.post("/api/alarms/ack", self._api_ack),
            web.get("/api/energy", self._api_energy),
            web.get("/api/coefficients", self._api_coefficients),
            web.get("/api/chain/{cert}", self._api_chain),
            web.get("/chain/{cert}", self._html_chain),
            web.static("/static", STATIC),
        ])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.host, self.options.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.options.port
        self._start_mqtt()
        self._tasks = [asyncio.create_task(self._broadcast(), name="dashboard-broadcast"),
                       asyncio.create_task(self._energy_loop(), name="dashboard-energy")]
        return self.port

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for q in list(self._clients):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        if self._runner is not None:
            await self._runner.cleanup()
        self.history.close()
        self.alarm_log.close()

    @property
    def url(self) -> str:
        host = self.options.host if self.options.host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self.port}/"

    # -- MQTT -----------------------------------------------------------------------------

    def _start_mqtt(self) -> None:
        client, props = make_client(self.loaded, unique_client_id("daq", "dashboard"))
        topic = self.options.topic
        client.on_connect = lambda c, *_: c.subscribe(topic, qos=0)
        client.on_message = self._on_message
        self._client = client
        connect_async(self.loaded, client, props)

    def _hand_over(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closing
                loop.call_soon_threadsafe(fn, *args)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        payload = bytes(msg.payload)
        now = time.time_ns()
        if not payload:
            return
        if len(parts) == 4 and parts[3] == "status":
            self._hand_over(self.state.apply_status, parts[1], parts[2],
                            payload.decode("utf-8", "replace"), now)
        elif len(parts) == 5 and parts[4] == "data":
            try:
                readings = decode_data(payload)
            except PayloadError:
                return
            self._hand_over(self.state.apply_readings, readings, now)
        elif len(parts) == 5 and parts[4] == "meta":
            try:
                doc = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return
            if isinstance(doc, dict) and {"enterprise", "gateway", "device"} <= doc.keys():
                self._hand_over(self.state.apply_meta, doc)
        elif len(parts) == 5 and parts[4] == "alarms":
            try:
                st = decode_alarms(payload)
            except AlarmPayloadError:
                return
            self._hand_over(self.state.apply_alarms, st, now)

    # -- push -----------------------------------------------------------------------------

    async def _broadcast(self) -> None:
        period = 1.0 / self.options.push_hz
        last_tick = 0.0
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            if now - last_tick >= 1.0:
                self.state.tick(time.time_ns())
                last_tick = now
                meters = sum(1 for _ in self.state.energy_meters(self.options.energy_channel))
                if meters != self._energy_meters:  # a new meter: today's energy at once
                    self._energy_meters = meters
                    self._energy_wake.set()
            delta = self.state.take_delta()
            if not delta:
                continue
            if delta.events:
                await asyncio.to_thread(self.alarm_log.record_events, delta.events)
            self._push(b"delta", orjson.dumps(delta.as_dict()))

    def _push(self, event: bytes, data: bytes) -> None:
        frame = b"event: " + event + b"\ndata: " + data + b"\n\n"
        self.pushes += 1
        for q in list(self._clients):
            try:
                q.put_nowait(frame)
            except asyncio.QueueFull:  # fell behind: drop its backlog, send a snapshot
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(self._snapshot_frame())

    def _snapshot_frame(self) -> bytes:
        return b"event: snapshot\ndata: " + orjson.dumps(self._state_doc()) + b"\n\n"

    def _state_doc(self) -> dict[str, Any]:
        return {**self.state.snapshot(), "energy": self.energy_today,
                "now": time.time_ns(), "tz": self.options.tz,
                "history": self.history.name, "registry": self.options.registry is not None,
                "token_required": self.options.token is not None}

    async def _energy_loop(self) -> None:
        while True:
            try:
                await self.refresh_energy()
            except Exception:  # a failing storage must not stop the dashboard
                log.exception("energy summary failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._energy_wake.wait(), self.options.energy_refresh_s)
            self._energy_wake.clear()

    async def refresh_energy(self) -> dict[str, Any]:
        """Recompute today's energy per enterprise and push it."""
        start, end = self._day_bounds(None)
        report = await self._energy(start, end, STEPS["15min"])
        summary: dict[str, Any] = {"computed": time.time_ns(), "from": start,
                                   "enterprises": {}, "error": report.get("error")}
        for ent, e in report["enterprises"].items():
            summary["enterprises"][ent] = {
                "kwh": e["register_kwh"], "tce": e["register_tce"],
                "completeness": e["completeness"], "meters": e["meters"]}
        self.energy_today = summary
        self._push(b"energy", orjson.dumps(summary))
        return summary

    # -- pages and API --------------------------------------------------------------------

    async def _index(self, _r: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html",
                                headers={"Cache-Control": "no-cache"})

    async def _api_state(self, _r: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self._state_doc()),
                            content_type="application/json")

    async def _api_events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        q: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=32)
        self._clients.add(q)
        try:
            await resp.write(self._snapshot_frame())
            while True:
                try:
                    frame = await asyncio.wait_for(q.get(), timeout=15.0)
                except TimeoutError:
                    frame = b": keep-alive\n\n"
                if frame is None:
                    break
                await resp.write(frame)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(q)
        return resp

    def _where(self, key: str) -> Where:
        rd = self.state.channels.get(key)
        if rd is None:
            raise web.HTTPNotFound(text=f"no channel {key!r} seen yet")
        return Where(rd["enterprise"], rd["gateway"], rd["device"], rd["channel"],
                     rd["quantity"])

    async def _api_trend(self, request: web.Request) -> web.Response:
        w = self._where(request.query.get("key", ""))
        minutes = float(request.query.get("minutes", "60"))
        end = time.time_ns() + NS
        start = end - int(minutes * 60 * NS)
        try:
            pts = await asyncio.to_thread(self.history.trend, w, start, end, 360)
        except HistoryUnavailable as exc:
            return web.json_response({"error": str(exc), "points": []})
        return web.Response(body=orjson.dumps({"points": pts, "source": self.history.name}),
                            content_type="application/json")

    async def _api_alarms(self, request: web.Request) -> web.Response:
        kind = request.query.get("kind") or None
        ent = request.query.get("enterprise") or None
        active = [{"enterprise": d.enterprise, "gateway": d.gateway, "device": d.device,
                   "device_key": d.key, **a}
                  for d in self.state.devices.values() for a in d.alarms]
        recent = await asyncio.to_thread(self.alarm_log.recent, 200)

        def keep(a: dict[str, Any]) -> bool:
            return (kind is None or a["kind"] == kind) and (ent is None
                                                            or a["enterprise"] == ent)

        return web.Response(body=orjson.dumps({
            "active": [a for a in active if keep(a)],
            "recent": [a for a in recent if keep(a)]}), content_type="application/json")

    async def _api_ack(self, request: web.Request) -> web.Response:
        if self.options.token is not None and not hmac.compare_digest(
                request.headers.get("X-Daq-Token", "").encode(), self.options.token.encode()):
            raise web.HTTPForbidden(text="acknowledging needs the dashboard token")
        if request.content_type != "application/json":
            # a page of another site can POST a form or text/plain without asking; a JSON
            # body needs a CORS preflight, which this server never grants
            raise web.HTTPUnsupportedMediaType(text="send the acknowledgement as JSON")
        try:
            body = await request.json(loads=orjson.loads)
            dev_key, key, since = parse_alarm_id(str(body["id"]))
            who = str(body["who"]).strip()
            note = str(body.get("note", ""))[:500]
        except (ValueError, KeyError, TypeError) as exc:
            raise web.HTTPBadRequest(text=f"expected id and who: {exc}") from None
        if not who or len(who) > 64:
            raise web.HTTPBadRequest(text="who: give your name (1–64 characters)")
        if self.state.active_alarm(dev_key, key, since) is None:
            raise web.HTTPNotFound(text=f"no active alarm {key!r} since {since} on {dev_key}")
        ent, gw, dev = dev_key.split("/", 2)
        ack = await asyncio.to_thread(self.alarm_log.acknowledge, ent, gw, dev, key, since,
                                      who, time.time_ns(), note)
        self.state.apply_ack(dev_key, key, since, ack)
        return web.json_response(ack)

    def _day_bounds(self, date: str | None) -> tuple[int, int]:
        zone = ZoneInfo(self.options.tz)
        day = (dt.date.fromisoformat(date) if date
               else dt.datetime.now(zone).date())
        start = dt.datetime.combine(day, dt.time(), zone)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
        return int(start.timestamp()) * NS, int(end.timestamp()) * NS

    async def _api_energy(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            step_txt = q.get("step", "15min")
            step = STEPS[step_txt] if step_txt in STEPS else int(step_txt.rstrip("s"))
            if "from" in q and "to" in q:
                start, end = int(q["from"]), int(q["to"])
            else:
                start, end = self._day_bounds(q.get("date"))
            report = await self._energy(start, end, step)
        except (ValueError, KeyError) as exc:
            raise web.HTTPBadRequest(text=f"energy: {exc}") from None
        return web.Response(body=orjson.dumps(report), content_type="application/json")

    async def _energy(self, start: int, end: int, step_s: int) -> dict[str, Any]:
        meters = [(Where(d.enterprise, d.gateway, d.device, desc["id"],
                         str(desc.get("quantity", "active_energy"))), str(desc.get("unit")),
                   (d.meta or {}).get("instrument"))
                  for d, desc in self.state.energy_meters(self.options.energy_channel)]
        return await asyncio.to_thread(self._energy_report, meters, start, end, step_s)

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

    def _energy_report(self, meters: list[tuple[Where, str, str | None]], start: int,
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

    async def _api_coefficients(self, _r: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps([c.as_dict() for c in
                                               self.coefficients.values()]),
                            content_type="application/json")

    def _chain(self, cert_id: str) -> dict[str, Any]:
        from calibration.chain import Records, resolve
        from calibration.records import Certificate, Instrument
        from calibration.registry import Registry, RegistryError

        if self.options.registry is None:
            raise web.HTTPNotFound(text="no calibration registry configured "
                                        "(daq dashboard --registry FILE or DAQ_REGISTRY)")
        try:
            with Registry(self.options.registry, create=False, read_only=True) as reg:
                cert = reg.get("certificate", cert_id)
                instruments = [r for r in reg.list("instrument") if isinstance(r, Instrument)]
                certs = [r for r in reg.list("certificate") if isinstance(r, Certificate)]
        except RegistryError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        if not isinstance(cert, Certificate):
            raise web.HTTPNotFound(text=f"no certificate {cert_id!r} in the registry")
        today = dt.datetime.now(ZoneInfo(self.options.tz)).date()
        chain = resolve(Records.of(instruments, certs), cert.instrument, today)
        return {"certificate": cert_id, "instrument": cert.instrument, "at": today.isoformat(),
                "ok": chain.ok, "chain": chain.as_dict()}

    async def _api_chain(self, request: web.Request) -> web.Response:
        doc = await asyncio.to_thread(self._chain, request.match_info["cert"])
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    async def _html_chain(self, request: web.Request) -> web.Response:
        doc = await asyncio.to_thread(self._chain, request.match_info["cert"])

        def link(d: dict[str, Any]) -> str:
            mark = "✔" if not d["problems"] else "✘"
            probs = "".join(f"<li class=bad>{html.escape(p)}</li>" for p in d["problems"])
            refs = "".join(link(r) for r in d["references"])
            u = f", u ≤ {d['u']:.3g}" if d.get("u") is not None else ""
            return (f"<li><b>{mark} {html.escape(d['instrument'])}</b> — "
                    f"{html.escape(d['certificate'] or 'no certificate')} (valid at {d['at']}"
                    f"{', expires ' + d['expires'] if d['expires'] else ''}{u})"
                    f"<ul>{probs}{refs}</ul></li>")

        body = (f"<!doctype html><meta charset=utf-8><meta name=viewport "
                f"content='width=device-width,initial-scale=1'><link rel=stylesheet "
                f"href='/static/app.css'><title>Chain of {html.escape(doc['certificate'])}"
                f"</title><main class=page><p><a href='/'>← dashboard</a></p>"
                f"<h1>Traceability of {html.escape(doc['instrument'])}</h1>"
                f"<p>certificate {html.escape(doc['certificate'])}, at {doc['at']}: "
                f"<b class={'ok' if doc['ok'] else 'bad'}>"
                f"{'chain intact' if doc['ok'] else 'chain broken'}</b> "
                f"(<a href='/api/chain/{html.escape(doc['certificate'])}'>JSON</a>)</p>"
                f"<ul class=chain>{link(doc['chain'])}</ul></main>")
        return web.Response(text=body, content_type="text/html")


async def serve(loaded: LoadedConfig, options: DashboardOptions,
                announce: Callable[[str], None] = print) -> None:
    """Run the dashboard until cancelled."""
    dash = Dashboard(loaded, options)
    await dash.start()
    announce(f"daq dashboard on {dash.url}")
    try:
        await asyncio.Event().wait()
    finally:
        await dash.stop()
