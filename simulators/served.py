"""``async with simulator:`` for everything that has ``start()`` and ``stop()``."""

from __future__ import annotations

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
