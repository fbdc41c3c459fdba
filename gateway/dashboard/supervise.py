"""Keep a background loop of the dashboard alive: a loop that raises is logged with its
traceback and started again, so one bad message or one bug cannot silently stop live updates
for every browser (an ``asyncio.Task``'s exception is otherwise only seen when someone awaits
it — at shutdown, or never).

A loop that keeps failing the same way is logged once, not once per restart; a different
failure is logged again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Supervised:
    """``await run()`` runs ``body()`` until cancelled, restarting it ``restart_after_s``
    after it raises (or returns, which a loop should not). ``restarts`` counts them."""

    def __init__(self, name: str, body: Callable[[], Awaitable[None]],
                 restart_after_s: float = 1.0) -> None:
        self.name = name
        self.body = body
        self.restart_after_s = restart_after_s
        self.restarts = 0
        self._last_failure: str | None = None

    async def run(self) -> None:
        while True:
            try:
                await self.body()
            except Exception as exc:  # the supervision boundary: logged, then restarted
                failure = f"{type(exc).__name__}: {exc}"
                if failure != self._last_failure:
                    log.exception("%s failed; restarting it in %g s", self.name,
                                  self.restart_after_s)
                else:
                    log.debug("%s failed again the same way: %s", self.name, failure)
                self._last_failure = failure
            else:
                log.error("%s ended by itself; restarting it in %g s", self.name,
                          self.restart_after_s)
            self.restarts += 1
            await asyncio.sleep(self.restart_after_s)

    def start(self) -> asyncio.Task[None]:
        return asyncio.create_task(self.run(), name=self.name)
