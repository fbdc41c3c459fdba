"""The dashboard's web server: aiohttp (one dependency for HTTP and Server-Sent Events), the
page and its assets from the package (no CDN), a JSON API and an SSE stream. This module
wires the parts together and holds the URL table; each concern has its own module:

==========================  ===================================================================
``feed.py``                 MQTT → :class:`~gateway.dashboard.state.LiveState`
``sse.py``                  ``/api/events``: deltas pushed to every browser a few times a second
``energy_api.py``           ``/api/energy``, ``/api/coefficients``, today's totals (``energy``)
``alarms_api.py``           ``/api/alarms``, ``/api/alarms/ack`` (token, alarm log)
``chain_view.py``           ``/chain/CERT``, ``/api/chain/CERT`` (calibration registry)
``supervise.py``            the background loops (broadcast, energy) restarted if they fail
``security.py``             headers on every response (CSP …); no open write action off loopback
==========================  ===================================================================

Here: ``/`` (the page), ``/api/state`` (a snapshot) and ``/api/trend`` (a channel's stored
values). The server binds to 127.0.0.1 by default; bound to anything else it needs a token
or ``read_only`` (:func:`~gateway.dashboard.security.check_exposure`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web

from daq.config import LoadedConfig
from gateway.dashboard.alarmlog import AlarmLog
from gateway.dashboard.alarms_api import AlarmsApi
from gateway.dashboard.chain_view import ChainView
from gateway.dashboard.energy_api import EnergyApi
from gateway.dashboard.feed import MqttFeed
from gateway.dashboard.history import History, HistoryUnavailable, Where, open_history
from gateway.dashboard.options import DashboardOptions
from gateway.dashboard.security import add_security_headers, check_exposure
from gateway.dashboard.sse import Broadcaster
from gateway.dashboard.state import LiveState
from gateway.dashboard.supervise import Supervised

NS = 1_000_000_000
STATIC = Path(__file__).resolve().parent / "static"

__all__ = ["Dashboard", "DashboardOptions", "serve"]


class Dashboard:
    """The dashboard server. ``await start()`` → the port bound; ``await stop()``."""

    def __init__(self, loaded: LoadedConfig, options: DashboardOptions) -> None:
        self.loaded = loaded
        self.options = options
        check_exposure(options.host, options.token, options.read_only)  # before anything is opened
        ZoneInfo(options.tz)  # refuse an unknown zone at start, not at the first request
        self.state = LiveState(options.stale_s)
        self.alarm_log = AlarmLog(options.alarm_log)
        for dev_key, key, since, ack in self.alarm_log.acks():
            self.state.apply_ack(dev_key, key, since, ack)
        self.history: History = open_history(loaded)
        self.feed = MqttFeed(loaded, options.topic, self.state)
        self.sse = Broadcaster(self.state, options.push_hz, self._state_doc,
                               self.alarm_log.record_events)
        self.energy = EnergyApi(options, self.state, self.history, self.sse.push)
        self.sse.every_second = self.energy.check_meters
        self.alarms = AlarmsApi(self.state, self.alarm_log, options.token, options.read_only)
        self.chains = ChainView(options.registry, options.tz)
        self.loops = [Supervised("dashboard-broadcast", self.sse.run),
                      # a bug in the summary: retried at the refresh rate, not every second
                      Supervised("dashboard-energy", self.energy.run,
                                 restart_after_s=options.energy_refresh_s)]
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.port = options.port

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> int:
        app = web.Application()
        app.on_response_prepare.append(add_security_headers)
        app.add_routes([
            web.get("/", self._index),
            web.get("/api/state", self._api_state),
            web.get("/api/events", self.sse.events),
            web.get("/api/trend", self._api_trend),
            web.get("/api/alarms", self.alarms.api_alarms),
            web.post("/api/alarms/ack", self.alarms.api_ack),
            web.get("/api/energy", self.energy.api_energy),
            web.get("/api/coefficients", self.energy.api_coefficients),
            web.get("/api/chain/{cert}", self.chains.api_chain),
            web.get("/chain/{cert}", self.chains.html_chain),
            web.static("/static", STATIC),
        ])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.host, self.options.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.options.port
        self.feed.start()
        self._tasks = [loop.start() for loop in self.loops]
        return self.port

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.sse.close()
        self.feed.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        self.history.close()
        self.alarm_log.close()

    @property
    def url(self) -> str:
        host = self.options.host if self.options.host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self.port}/"

    @property
    def pushes(self) -> int:
        return self.sse.pushes

    @property
    def energy_today(self) -> dict[str, Any]:
        return self.energy.today

    async def refresh_energy(self) -> dict[str, Any]:
        """Recompute today's energy per enterprise and push it."""
        return await self.energy.refresh()

    # -- the page, a snapshot, trends -----------------------------------------------------

    def _state_doc(self) -> dict[str, Any]:
        return {**self.state.snapshot(), "energy": self.energy.today,
                "now": time.time_ns(), "tz": self.options.tz,
                "history": self.history.name, "registry": self.options.registry is not None,
                "token_required": self.options.token is not None,
                "read_only": self.options.read_only}

    async def _index(self, _r: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html",
                                headers={"Cache-Control": "no-cache"})

    async def _api_state(self, _r: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self._state_doc()),
                            content_type="application/json")

    async def _api_trend(self, request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        rd = self.state.channels.get(key)
        if rd is None:
            raise web.HTTPNotFound(text=f"no channel {key!r} seen yet")
        w = Where(rd["enterprise"], rd["gateway"], rd["device"], rd["channel"],
                  rd["quantity"])
        minutes = float(request.query.get("minutes", "60"))
        end = time.time_ns() + NS
        start = end - int(minutes * 60 * NS)
        try:
            pts = await asyncio.to_thread(self.history.trend, w, start, end, 360)
        except HistoryUnavailable as exc:
            return web.json_response({"error": str(exc), "points": []})
        return web.Response(body=orjson.dumps({"points": pts, "source": self.history.name}),
                            content_type="application/json")


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
