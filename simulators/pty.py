"""A pseudo-terminal a simulator serves on: the driver opens :attr:`PtyEndpoint.path`
(``/dev/pts/N``) as if it were a serial port. Raw mode (no echo, no line discipline)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable


class PtyEndpoint:
    """The master side of a pty, read with ``loop.add_reader`` and handed to ``on_data``."""

    def __init__(self, on_data: Callable[[bytes], None]) -> None:
        self._on_data = on_data
        self._master: int | None = None
        self._slave: int | None = None
        self.path = ""

    def open(self) -> str:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: the bytes as sent
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.path = os.ttyname(slave)  # slave kept open: the pty lives while we do
        asyncio.get_running_loop().add_reader(master, self._readable)
        return self.path

    def _readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO: no slave open right now
        if data:
            self._on_data(data)

    def write(self, data: bytes) -> None:
        if self._master is None:
            return
        with contextlib.suppress(OSError):  # full or nobody listening: the bytes are lost
            os.write(self._master, data)

    def close(self) -> None:
        master, self._master = self._master, None
        slave, self._slave = self._slave, None
        if master is not None:
            asyncio.get_running_loop().remove_reader(master)
        for fd in (master, slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.path = ""
