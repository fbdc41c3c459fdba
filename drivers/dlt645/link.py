"""The DL/T 645-2007 link (the transport under :class:`~drivers.dlt645.driver.Dlt645Driver`):
the codec plus any byte stream (serial port, pseudo-terminal, TCP to an RS-485 converter),
supplied by an opener callable; one link per line, shared by its meters.

One transaction at a time (a DL/T 645 bus carries one request in flight); a reply for
another address or identifier is a protocol error; an abnormal reply is a typed device
error with the meter's error byte; silence is a timeout, after which the decoder is reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable

from daq.model import Reason
from drivers.dlt645.codec import (
    WILDCARD,
    Dlt645AbnormalReply,
    Dlt645Decoder,
    Dlt645Error,
    Frame,
    encode_frame,
    identifiers,
    parse_address_reply,
    parse_read_reply,
    read_address_request,
    read_data_request,
    read_followup_request,
    time_sync_frame,
)
from drivers.errors import DeviceConnectionError, DeviceProtocolError, DeviceTimeout, DriverError

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Opener = Callable[[], Awaitable[Streams]]
MAX_FOLLOWUPS = 16


class Dlt645DeviceError(DriverError):
    """The meter answered with an abnormal reply (e.g. no such data identifier)."""

    reason = Reason.DEVICE_EXCEPTION

    def __init__(self, address: str, di: int, abnormal: Dlt645AbnormalReply) -> None:
        self.error = abnormal.error
        super().__init__(f"meter {address}, {di:08X}: {abnormal}")


class Dlt645Link:
    """Transactions on one DL/T 645 line: ``read``, ``read_value``, ``read_address``,
    ``sync_time``; raises only :class:`~drivers.errors.DriverError`."""

    def __init__(self, opener: Opener, *, timeout_s: float = 1.0, wakeup: int = 4,
                 min_gap_s: float = 0.0) -> None:
        self._open = opener
        self.timeout_s = timeout_s
        self.wakeup = wakeup
        self.min_gap_s = min_gap_s
        self._streams: Streams | None = None
        self._decoder = Dlt645Decoder()
        self._lock = asyncio.Lock()
        self._last_end = 0.0
        self.stray_frames = 0

    async def close(self) -> None:
        streams, self._streams = self._streams, None
        if streams is not None:
            streams[1].close()
            with contextlib.suppress(OSError, ConnectionError):
                await streams[1].wait_closed()

    async def _connect(self) -> Streams:
        if self._streams is None:
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can lose a cancellation
                async with asyncio.timeout(self.timeout_s):
                    self._streams = await self._open()
            except (OSError, TimeoutError) as exc:
                raise DeviceConnectionError(f"cannot open the line: {exc}") from exc
            self._decoder.reset()
        return self._streams

    async def transact(self, request: Frame, *, expect_reply: bool = True) -> Frame | None:
        """Send one frame; return the meter's reply or raise.

        A frame that is not a reply to this request — a late reply to an earlier one, another
        meter's — is skipped (counted in ``stray_frames``) and the wait goes on, so a slow
        meter cannot break its neighbour's read on a shared line.
        """
        foreign: list[Frame] = []
        async with self._lock:
            loop = asyncio.get_running_loop()
            gap = self._last_end + self.min_gap_s - loop.time()
            if gap > 0:
                await asyncio.sleep(gap)
            reader, writer = await self._connect()
            try:
                writer.write(encode_frame(request, self.wakeup))
                await writer.drain()
                if not expect_reply:
                    return None
                async with asyncio.timeout(self.timeout_s):
                    while True:
                        data = await reader.read(512)
                        if not data:
                            raise ConnectionResetError("the line closed")
                        for frame in self._decoder.feed(data):
                            if _answers(frame, request):
                                return frame
                            foreign.append(frame)
                            self.stray_frames += 1
            except TimeoutError as exc:
                self._decoder.reset()  # a half-received frame must not poison the next reply
                if foreign:
                    seen = ", ".join(sorted({f"{f.address} (control 0x{f.control:02X})"
                                             for f in foreign}))
                    raise DeviceProtocolError(f"meter {request.address}: no reply in "
                                              f"{self.timeout_s} s; only frames from {seen}"
                                              ) from exc
                raise DeviceTimeout(f"meter {request.address}: no reply in "
                                    f"{self.timeout_s} s") from exc
            except OSError as exc:
                await self.close()
                raise DeviceConnectionError(f"meter {request.address}: {exc}") from exc
            finally:
                self._last_end = loop.time()

    async def read(self, address: str, di: int) -> bytes:
        """The value bytes of ``di`` (follow-up frames joined)."""
        reply = await self.transact(read_data_request(address, di))
        payload = self._payload(address, di, reply)
        seq = 0
        while reply is not None and reply.more_follows and seq < MAX_FOLLOWUPS:
            seq += 1
            reply = await self.transact(read_followup_request(address, di, seq))
            payload += self._payload(address, di, reply)[:-1]  # last byte: frame sequence
        return payload

    def _payload(self, address: str, di: int, reply: Frame | None) -> bytes:
        if reply is None:
            raise DeviceProtocolError("no reply frame")
        try:
            return parse_read_reply(reply, di)
        except Dlt645AbnormalReply as exc:
            raise Dlt645DeviceError(address, di, exc) from exc
        except Dlt645Error as exc:
            raise DeviceProtocolError(f"meter {address}: {exc}") from exc

    async def read_value(self, address: str, di: int) -> float:
        spec = identifiers().get(di)
        if spec is None:
            raise DeviceProtocolError(f"{di:08X} is not in the identifier table")
        payload = await self.read(address, di)
        try:
            return spec.decode(payload)
        except Dlt645Error as exc:
            raise DeviceProtocolError(f"meter {address}, {di:08X}: {exc}") from exc

    async def read_address(self) -> str:
        """The address of the one meter on the line (wildcard request)."""
        reply = await self.transact(read_address_request())
        assert reply is not None
        try:
            return parse_address_reply(reply)
        except Dlt645Error as exc:
            raise DeviceProtocolError(str(exc)) from exc

    async def sync_time(self, when: dt.datetime) -> None:
        """Broadcast time synchronisation (no reply expected)."""
        await self.transact(time_sync_frame(when), expect_reply=False)


def _answers(frame: Frame, request: Frame) -> bool:
    """Whether ``frame`` is the meter's reply to ``request``."""
    if not frame.from_meter or frame.function != request.function:
        return False
    return request.address == WILDCARD or frame.address == request.address
