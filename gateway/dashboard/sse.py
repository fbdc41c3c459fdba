"""Server-Sent Events: what changed in the live state, pushed to every browser.

The broadcaster wakes ``push_hz`` times a second, takes the state's delta and sends one
coalesced ``delta`` event per tick (the same bytes for every client); other parts push their
own events (``energy``) through :meth:`Broadcaster.push`. Each client has a bounded queue: one
that falls behind (its queue full) gets a fresh ``snapshot`` instead of the backlog. Once a
second the broadcaster re-derives the time-dependent statuses and calls ``every_second``.

:meth:`Broadcaster.run` is a loop for :class:`~gateway.dashboard.supervise.Supervised`: if it
raises, the supervisor logs it and starts it again; the clients stay connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.dashboard.state import LiveState

CLIENT_QUEUE = 32  # pushes waiting per client before it gets a snapshot instead
KEEP_ALIVE_S = 15.0


class Broadcaster:
    def __init__(self, state: LiveState, push_hz: float,
                 state_doc: Callable[[], dict[str, Any]],
                 record_events: Callable[[list[dict[str, Any]]], None],
                 every_second: Callable[[], None] = lambda: None) -> None:
        self.state = state
        self.period_s = 1.0 / push_hz
        self.state_doc = state_doc  # the whole page's data, for snapshots
        self.record_events = record_events  # blocking (SQLite): run in a thread
        self.every_second = every_second
        self.pushes = 0
        self._clients: set[asyncio.Queue[bytes | None]] = set()

    async def run(self) -> None:
        last_tick = 0.0
        while True:
            await asyncio.sleep(self.period_s)
            now = time.monotonic()
            if now - last_tick >= 1.0:
                self.state.tick(time.time_ns())
                last_tick = now
                self.every_second()
            delta = self.state.take_delta()
            if not delta:
                continue
            if delta.events:
                await asyncio.to_thread(self.record_events, delta.events)
            self.push(b"delta", orjson.dumps(delta.as_dict()))

    def push(self, event: bytes, data: bytes) -> None:
        frame = b"event: " + event + b"\ndata: " + data + b"\n\n"
        self.pushes += 1
        for q in list(self._clients):
            try:
                q.put_nowait(frame)
            except asyncio.QueueFull:  # fell behind: drop its backlog, send a snapshot
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(self.snapshot_frame())

    def snapshot_frame(self) -> bytes:
        return b"event: snapshot\ndata: " + orjson.dumps(self.state_doc()) + b"\n\n"

    def close(self) -> None:
        """Tell every client's stream to end."""
        for q in list(self._clients):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/events``: a snapshot, then the pushes, with a keep-alive comment every
        15 s of silence."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        q: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=CLIENT_QUEUE)
        self._clients.add(q)
        try:
            await resp.write(self.snapshot_frame())
            while True:
                try:
                    frame = await asyncio.wait_for(q.get(), timeout=KEEP_ALIVE_S)
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
