"""``async with simulator:`` for everything that has ``start()`` and ``stop()``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType
from typing import Self


class Served:
    """Mixin: entering starts the simulator, leaving stops it (also on errors)."""

    async def start(self) -> object:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


async def hang_up(writers: Iterable[asyncio.StreamWriter],
                  tasks: Iterable[asyncio.Task[None]]) -> None:
    """Close every client connection and end the tasks serving them (a simulator stopping)."""
    for writer in list(writers):
        writer.close()
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
