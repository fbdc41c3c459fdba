"""Alarms on the dashboard: ``GET /api/alarms`` (active ones from the live state, recent ones
from the alarm log, filtered by ``kind`` and ``enterprise``) and ``POST /api/alarms/ack``
(who acknowledged which alarm instance, and when — kept in the alarm log).

Acknowledging is the dashboard's one write action: refused on a read-only dashboard; when a
token is set it must come in the ``X-Daq-Token`` header, and the body must be JSON (a page of
another site can POST a form or text/plain without asking; a JSON body needs a CORS
preflight, which the server never grants).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

import orjson
from aiohttp import web

from gateway.dashboard.alarmlog import AlarmLog
from gateway.dashboard.state import LiveState, parse_alarm_id


class AlarmsApi:
    def __init__(self, state: LiveState, alarm_log: AlarmLog, token: str | None,
                 read_only: bool = False) -> None:
        self.state = state
        self.alarm_log = alarm_log
        self.token = token
        self.read_only = read_only

    async def api_alarms(self, request: web.Request) -> web.Response:
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

    async def api_ack(self, request: web.Request) -> web.Response:
        if self.read_only:
            raise web.HTTPForbidden(text="this dashboard is read-only: acknowledge on one "
                                         "that has a token")
        if self.token is not None and not hmac.compare_digest(
                request.headers.get("X-Daq-Token", "").encode(), self.token.encode()):
            raise web.HTTPForbidden(text="acknowledging needs the dashboard token")
        if request.content_type != "application/json":
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
