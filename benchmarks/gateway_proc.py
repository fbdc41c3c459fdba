"""The gateway as a benchmark process: ``python -m benchmarks.gateway_proc CONFIG``.

Runs :class:`gateway.acquisition.service.GatewayService` unchanged (what ``daq gateway``
runs) and talks
JSON lines on stdout:

* SIGUSR1 → a snapshot: readings acquired (put into the outbox), polls and failed polls
  summed over devices, messages published, confirmed (by storage's ``daq.ack/1`` with the
  default ``delivery.confirm: stored``), sent again and unconfirmed, outbox backlog;
* SIGTERM / SIGINT → the service is cancelled (it commits what it holds, flushes for up to
  2 s and goes offline). If the outbox still holds messages then, they are sent by a fresh
  publisher on the same outbox — what a restarted gateway does — and the time that took is
  reported, so stored can be compared with acquired. Then a final snapshot and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from typing import Any

from daq.config import load_config
from gateway.acquisition.publisher import Publisher
from gateway.acquisition.service import GatewayService
from gateway.outbox import Outbox

STOP_TIMEOUT_S = 20.0


def snapshot(svc: GatewayService, kind: str) -> dict[str, Any]:
    try:
        backlog = svc.outbox.count()
    except Exception:  # closed after shutdown
        backlog = -1
    return {
        "kind": kind,
        "t_ns": time.time_ns(),
        "acquired": svc.acquired,
        "polls": sum(c.state.polls for c in svc.coordinators),
        "failures": sum(c.state.failures for c in svc.coordinators),
        "missed_ticks": sum(c.state.missed_ticks for c in svc.coordinators),
        "published": svc.publisher.published,
        "acknowledged": svc.publisher.acknowledged,
        "resent": svc.publisher.resent,
        "unconfirmed": svc.publisher.unconfirmed,
        "outbox": backlog,
        "queue": svc._queue.qsize(),
    }


def emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


async def drain_outbox(svc: GatewayService, timeout_s: float) -> tuple[int, float]:
    """Send what the stopped service left in its outbox; (messages left before, seconds)."""
    path = svc.loaded.resolve(svc.config.outbox.format(gateway=svc.config.id))
    outbox = Outbox(path)
    left = outbox.count()
    t0 = time.monotonic()
    if left:
        # as the service's own publisher: confirmed by storage (daq.ack/1) unless the site
        # says broker, so a row leaves the outbox only once the ingest has stored it
        pub = Publisher(svc.loaded, outbox, f"bench-drain-{os.getpid()}",
                        enterprise=svc.enterprise, gateway=svc.config.id,
                        delivery=svc.config.delivery, login=svc.config.mqtt_login)
        pub.start()
        runner = asyncio.create_task(pub.run(), name="drain-publisher")
        deadline = time.monotonic() + 10
        # Publisher.connected is a threading.Event underneath: nothing to await
        while not pub.connected and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await pub.flush(timeout_s)
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        pub.stop()
    outbox.close()
    return left, time.monotonic() - t0


async def main(config_path: str) -> None:
    svc = GatewayService(load_config(config_path))
    # Python-level handlers polled by a task, not loop.add_signal_handler: the latter learns
    # of a signal through the loop's self-pipe, and a benchmark's control channel should not
    # depend on what else writes to that pipe (the publisher once did, once per PUBACK)
    pending: list[int] = []
    for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: pending.append(s))
    stop = asyncio.Event()

    async def signals() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.01)
            while pending:
                if pending.pop(0) == signal.SIGUSR1:
                    emit(snapshot(svc, "snapshot"))
                else:
                    stop.set()

    watcher = asyncio.create_task(signals(), name="signals")
    task = asyncio.create_task(svc.run(), name="gateway")
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    t_stop = time.time_ns()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
    stuck = [t for t in asyncio.all_tasks() if not t.done()
             and t not in (asyncio.current_task(), stopper, watcher)]
    if not done:  # the service did not finish its shutdown: say where it waits
        print(f"gateway_proc: service not stopped {STOP_TIMEOUT_S} s after cancel; "
              f"{len(stuck)} tasks left:", file=sys.stderr)
        for t in stuck[:5]:
            t.print_stack(limit=30, file=sys.stderr)
    stopper.cancel()
    watcher.cancel()
    final = snapshot(svc, "final")
    final["stop_hung_tasks"] = [t.get_name() for t in stuck] if not done else []
    final["stop_ns"] = t_stop
    final["left_in_outbox"], final["drain_s"] = await drain_outbox(svc, 120.0)
    emit(final)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
