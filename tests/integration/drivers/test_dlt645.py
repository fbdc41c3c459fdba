"""DL/T 645-2007 driver against the meter simulator over a real TCP socket (an RS-485 to
Ethernet converter, as most sites have)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator

import pytest

from drivers.dlt645 import identifiers
from drivers.dlt645.link import Dlt645DeviceError, Dlt645Link
from drivers.errors import DeviceConnectionError, DeviceProtocolError, DeviceTimeout
from simulators.dlt645_meter import Dlt645MeterSimulator

ADDRESS = "558890213594"


@pytest.fixture
async def meter() -> AsyncIterator[Dlt645MeterSimulator]:
    async with Dlt645MeterSimulator(ADDRESS, seed=3) as sim:
        yield sim


def client(sim: Dlt645MeterSimulator, timeout_s: float = 0.3) -> Dlt645Link:
    return Dlt645Link(lambda: asyncio.open_connection("127.0.0.1", sim.port),
                        timeout_s=timeout_s)


async def test_every_identifier_reads_its_true_value(meter: Dlt645MeterSimulator) -> None:
    c = client(meter)
    try:
        assert await c.read_address() == ADDRESS
        for di, spec in identifiers().items():
            value = await c.read_value(ADDRESS, di)
            assert value == meter.truth(di, time.time_ns()), spec.name
        assert 200 < await c.read_value(ADDRESS, 0x02010100) < 260  # phase A voltage, V
        assert 49.9 < await c.read_value(ADDRESS, 0x02800002) < 50.1
    finally:
        await c.close()


async def test_unknown_identifier_is_an_abnormal_reply(meter: Dlt645MeterSimulator) -> None:
    c = client(meter)
    try:
        with pytest.raises(Dlt645DeviceError, match="no such data") as info:
            await c.read(ADDRESS, 0x04000401)
        assert info.value.error == 0x02
        assert info.value.reason == "device_exception"
    finally:
        await c.close()


async def test_faults(meter: Dlt645MeterSimulator) -> None:
    c = client(meter)
    try:
        meter.faults.silent = True
        with pytest.raises(DeviceTimeout):
            await c.read_value(ADDRESS, 0x00010000)
        meter.faults.silent = False
        meter.faults.corrupt_checksum = True
        with pytest.raises(DeviceTimeout):  # a frame with a bad checksum is no frame
            await c.read_value(ADDRESS, 0x00010000)
        meter.faults.corrupt_checksum = False
        meter.faults.garbage_before = b"\x68\x00\x11garbage\x16"
        meter.faults.wakeup = 0
        assert await c.read_value(ADDRESS, 0x00010000) > 0  # resynchronised
        meter.faults.garbage_before = b""
        meter.faults.abnormal = 0x04
        with pytest.raises(Dlt645DeviceError, match="password"):
            await c.read_value(ADDRESS, 0x00010000)
        meter.faults.abnormal = None
        assert await c.read_value(ADDRESS, 0x00010000) > 0  # recovered
    finally:
        await c.close()


async def test_other_address_gets_no_answer_and_time_sync_is_broadcast(
        meter: Dlt645MeterSimulator) -> None:
    c = client(meter)
    try:
        with pytest.raises(DeviceTimeout):
            await c.read_value("000000000001", 0x00010000)
        when = dt.datetime(2026, 11, 25, 17, 52, 30)
        await c.sync_time(when)
        for _ in range(50):
            if meter.clock_set_to is not None:
                break
            await asyncio.sleep(0.01)
        assert meter.clock_set_to == when
    finally:
        await c.close()


async def test_unreachable_line_is_a_connection_error() -> None:
    from simulators.broker import free_port

    port = free_port()
    c = Dlt645Link(lambda: asyncio.open_connection("127.0.0.1", port), timeout_s=0.3)
    with pytest.raises(DeviceConnectionError):
        await c.read_value(ADDRESS, 0x00010000)


async def test_identifier_outside_the_table_is_refused_before_sending(
        meter: Dlt645MeterSimulator) -> None:
    c = client(meter)
    try:
        with pytest.raises(DeviceProtocolError):
            await c.read_value(ADDRESS, 0x04000401)
        assert meter.requests == 0
    finally:
        await c.close()


async def test_a_value_in_several_frames_is_joined_through_follow_up_reads() -> None:
    """A meter answering with the "more frames follow" bit: the client asks with read
    follow-up (0x12, frame sequence 1, 2 …) and joins the parts (each follow-up reply ends
    with its sequence byte)."""
    from drivers.dlt645 import Dlt645Decoder, encode_frame, reply_to
    from drivers.dlt645.codec import READ_FOLLOWUP

    parts = [bytes.fromhex("26 02"), bytes.fromhex("00 00")]
    seen: list[int] = []
    handlers: list[asyncio.Task[None]] = []

    async def meter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        decoder = Dlt645Decoder()
        while data := await reader.read(512):
            for req in decoder.feed(data):
                seen.append(req.function)
                di = req.data[:4]
                if req.function == READ_FOLLOWUP:
                    seq = req.data[4]
                    reply = reply_to(req, di + parts[seq] + bytes((seq,)),
                                     more=seq < len(parts) - 1)
                else:
                    reply = reply_to(req, di + parts[0], more=True)
                writer.write(encode_frame(reply))
        writer.close()

    server = await asyncio.start_server(meter, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    c = Dlt645Link(lambda: asyncio.open_connection("127.0.0.1", port), timeout_s=0.5)
    try:
        assert await c.read(ADDRESS, 0x00010000) == bytes.fromhex("26 02 00 00")
        assert await c.read_value(ADDRESS, 0x00010000) == pytest.approx(2.26)
        assert seen[:2] == [0x11, 0x12]
    finally:
        await c.close()
        server.close()
        await asyncio.wait_for(asyncio.gather(*handlers), 2)  # each closes its writer
        await server.wait_closed()


async def test_a_frame_from_another_meter_does_not_break_the_read() -> None:
    """On a shared line a late reply from meter A may arrive while meter B is asked: B's
    read skips it and takes B's own reply."""
    from drivers.dlt645 import Dlt645Decoder, encode_frame, reply_to
    from drivers.dlt645.codec import read_data_request

    other = "000000000001"
    handlers: list[asyncio.Task[None]] = []

    async def line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        decoder = Dlt645Decoder()
        while data := await reader.read(512):
            for req in decoder.feed(data):
                late = reply_to(read_data_request(other, 0x00010000),
                                bytes.fromhex("00 00 01 00 99 99 00 00"))
                mine = reply_to(req, req.data[:4] + bytes.fromhex("26 02 00 00"))
                writer.write(encode_frame(late) + encode_frame(mine))
        writer.close()

    server = await asyncio.start_server(line, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    c = Dlt645Link(lambda: asyncio.open_connection("127.0.0.1", port), timeout_s=0.5)
    try:
        assert await c.read_value(ADDRESS, 0x00010000) == pytest.approx(2.26)
        assert c.stray_frames == 1
    finally:
        await c.close()
        server.close()
        await asyncio.wait_for(asyncio.gather(*handlers), 2)
        await server.wait_closed()
