"""The Modbus TCP driver against a real server on a real socket (127.0.0.1, free port).

The server lives here and is built from the same codec the production code uses
(``TcpDecoder(role="server")`` + ``encode_tcp``); it does not depend on ``simulators/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Iterable
from typing import Literal

import pytest

from daq.config.profiles import BUILTIN_PROFILE_DIR, ModbusChannel, Profile, load_profile_file
from drivers.errors import (
    DecodeError,
    DeviceConnectionError,
    DeviceException,
    DeviceProtocolError,
    DeviceTimeout,
)
from drivers.modbus.codec import (
    ExceptionResponse,
    Frame,
    ModbusProtocolError,
    ReadRequest,
    ReadResponse,
    TcpDecoder,
    encode_tcp,
    encode_value,
)
from drivers.modbus.driver import ModbusDriver, PymodbusTcpReader, RegisterReader

HOST = "127.0.0.1"
Mode = Literal["normal", "silent", "drop", "short"]


class MiniModbusServer:
    """A tiny Modbus TCP server serving fixed registers.

    Unused registers inside a read read as 0; a read that touches no defined register
    gets exception 2 (illegal data address).
    """

    def __init__(self, registers: dict[tuple[int, int], int], mode: Mode = "normal") -> None:
        self.registers = registers  # (function, address) -> value
        self.mode: Mode = mode
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._handle, HOST, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    def answer(self, req: ReadRequest) -> Frame:
        span = [(req.function, a) for a in range(req.address, req.address + req.count)]
        if not any(key in self.registers for key in span):
            return ExceptionResponse(req.unit, req.function, 2)
        regs = tuple(self.registers.get(key, 0) for key in span)
        if self.mode == "short":
            regs = regs[:-1]
        return ReadResponse(req.unit, req.function, regs)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        decoder = TcpDecoder("server")
        try:
            while data := await reader.read(4096):
                try:
                    frames = decoder.feed(data)
                except ModbusProtocolError:
                    break
                for tid, req in frames:
                    self.requests += 1
                    if self.mode == "silent":
                        continue
                    if self.mode == "drop":
                        return
                    assert isinstance(req, ReadRequest)
                    writer.write(encode_tcp(self.answer(req), tid))
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def load(name: str) -> Profile:
    return load_profile_file(BUILTIN_PROFILE_DIR / f"{name}.yaml")


SDM630_VALUES = {
    "voltage_l1": 230.0, "voltage_l2": 231.5, "voltage_l3": 229.25,
    "current_l1": 5.5, "current_l2": 0.25, "current_l3": 10.0,
    "power_l1": 1265.0, "power_l2": -57.75, "power_l3": 2292.5, "power_total": 3499.75,
    "power_factor": 0.96875, "frequency": 50.0, "energy_import": 12345.5, "energy_export": 42.0,
}


def register_image(channels: Iterable[ModbusChannel], raw: dict[str, float]) -> dict[
    tuple[int, int], int
]:
    image: dict[tuple[int, int], int] = {}
    for ch in channels:
        if ch.id in raw:
            for i, r in enumerate(encode_value(raw[ch.id], ch.type, ch.order, ch.length)):
                image[(ch.function, ch.address + i)] = r
    return image


@contextlib.asynccontextmanager
async def serving(server: MiniModbusServer) -> AsyncIterator[MiniModbusServer]:
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def device_for(port: int, channels: Iterable[ModbusChannel], timeout_s: float = 1.0,
                     **options: float) -> AsyncIterator[ModbusDriver]:
    reader = PymodbusTcpReader(HOST, port, timeout_s=timeout_s)
    assert isinstance(reader, RegisterReader)
    device = ModbusDriver(reader, 1, list(channels), **options)  # type: ignore[arg-type]
    try:
        yield device
    finally:
        await device.close()


async def free_port() -> int:
    server = MiniModbusServer({})
    port = await server.start()
    await server.stop()
    return port


async def test_poll_sdm630_values() -> None:
    profile = load("sdm630")
    async with serving(MiniModbusServer(register_image(profile.channels, SDM630_VALUES))) as srv, \
            device_for(srv.port, profile.channels) as dev:
        before = time.time_ns()
        results = await dev.poll()
        after = time.time_ns()
        assert [r.channel.id for r in results] == [c.id for c in profile.channels]
        for r in results:
            assert r.error is None, r
            assert r.value == SDM630_VALUES[r.channel.id]
            assert r.raw == SDM630_VALUES[r.channel.id]
            assert before <= r.ts_ns <= after
        assert srv.requests == 2  # two coalesced requests
        assert dev.reader.connected


async def test_poll_dtsu666_scaled_holding_registers() -> None:
    profile = load("dtsu666")
    raw = {"voltage_l1": 2301.0, "current_l1": 5432.0, "power_total": 12500.0,
           "power_factor": 987.0, "frequency": 4999.0, "energy_import": 1234.5}
    channels = [c for c in profile.channels if c.id in raw]
    async with serving(MiniModbusServer(register_image(channels, raw))) as srv, \
            device_for(srv.port, channels) as dev:
        values = {r.channel.id: r.value for r in await dev.poll()}
    assert values["voltage_l1"] == pytest.approx(230.1)
    assert values["current_l1"] == pytest.approx(5.432)
    assert values["power_total"] == pytest.approx(1250.0)
    assert values["power_factor"] == pytest.approx(0.987)
    assert values["frequency"] == pytest.approx(49.99)
    assert values["energy_import"] == pytest.approx(1234.5)


async def test_server_down_gives_connection_errors() -> None:
    port = await free_port()
    profile = load("sdm630")
    async with device_for(port, profile.channels) as dev:
        t0 = time.monotonic()
        results = await dev.poll()
        assert time.monotonic() - t0 < 1.0
    assert len(results) == len(profile.channels)
    for r in results:
        assert isinstance(r.error, DeviceConnectionError)
        assert r.error.reason == "connection"
        assert r.value is None
        assert r.raw is None


async def test_silent_server_gives_timeout_within_the_timeout() -> None:
    profile = load("sdm630")
    channels = [c for c in profile.channels if c.id == "voltage_l1"]
    async with serving(MiniModbusServer({}, mode="silent")) as srv, \
            device_for(srv.port, channels, timeout_s=0.2) as dev:
        t0 = time.monotonic()
        (result,) = await dev.poll()
        elapsed = time.monotonic() - t0
        assert isinstance(result.error, DeviceTimeout)
        assert result.error.reason == "timeout"
        assert 0.15 < elapsed < 1.0
        # a second poll times out again, it does not hang or raise
        (again,) = await dev.poll()
        assert isinstance(again.error, DeviceTimeout)


async def test_exception_code_2_marks_only_that_request() -> None:
    profile = load("sdm630")
    values = dict(SDM630_VALUES)
    image = register_image(profile.channels, values)
    for a in range(0x34, 0x4C):  # the second request's registers are missing
        image.pop((4, a), None)
    async with serving(MiniModbusServer(image)) as srv, \
            device_for(srv.port, profile.channels) as dev:
        results = {r.channel.id: r for r in await dev.poll()}
    assert results["voltage_l1"].value == 230.0
    assert results["power_l3"].error is None
    err = results["energy_export"].error
    assert isinstance(err, DeviceException)
    assert (err.code, err.name, err.function, err.reason) == (
        2, "illegal data address", 4, "device_exception")
    assert results["power_total"].error is err


async def test_driver_recovers_when_server_comes_back() -> None:
    profile = load("sdm630")
    channels = [c for c in profile.channels if c.id in ("voltage_l1", "frequency")]
    server = MiniModbusServer(register_image(channels, SDM630_VALUES))
    port = await server.start()
    async with device_for(port, channels) as dev:
        assert all(r.ok for r in await dev.poll())
        await server.stop()
        down = await dev.poll()
        assert all(isinstance(r.error, DeviceConnectionError) for r in down)
        assert not dev.reader.connected
        await server.start(port)
        try:
            back = await dev.poll()
            assert [r.value for r in back] == [230.0, 50.0]
        finally:
            await server.stop()


async def test_connection_dropped_mid_request_is_a_connection_error() -> None:
    channels = [c for c in load("sdm630").channels if c.id == "voltage_l1"]
    async with serving(MiniModbusServer({}, mode="drop")) as srv, \
            device_for(srv.port, channels, timeout_s=2.0) as dev:
        t0 = time.monotonic()
        (result,) = await dev.poll()
        assert isinstance(result.error, DeviceConnectionError)
        assert time.monotonic() - t0 < 1.0  # reported at once, not after the timeout


async def test_short_answer_is_a_protocol_error() -> None:
    channels = [c for c in load("sdm630").channels if c.id in ("voltage_l1", "voltage_l2")]
    async with serving(MiniModbusServer(register_image(channels, SDM630_VALUES),
                                        mode="short")) as srv, \
            device_for(srv.port, channels) as dev:
        results = await dev.poll()
    assert all(isinstance(r.error, DeviceProtocolError) for r in results)
    assert all(r.error is not None and r.error.reason == "protocol" for r in results)


async def test_non_finite_float_is_a_decode_error_for_that_channel_only() -> None:
    channels = [c for c in load("sdm630").channels if c.id in ("voltage_l1", "voltage_l2")]
    image = register_image(channels, {"voltage_l1": math.nan, "voltage_l2": 231.5})
    async with serving(MiniModbusServer(image)) as srv, device_for(srv.port, channels) as dev:
        first, second = await dev.poll()
    assert isinstance(first.error, DecodeError)
    assert first.error.reason == "decode"
    assert first.value is None
    assert second.value == 231.5


async def test_pause_between_requests() -> None:
    profile = load("sdm630")
    async with serving(MiniModbusServer(register_image(profile.channels, SDM630_VALUES))) as srv, \
            device_for(srv.port, profile.channels, pause_between_requests_s=0.05) as dev:
        t0 = time.monotonic()
        results = await dev.poll()
        assert time.monotonic() - t0 >= 0.05
    assert all(r.ok for r in results)


async def test_busy_is_retried_and_pause_after_connect_is_kept() -> None:
    """Exception 6 (server device busy) is retried ``retries_on_busy`` times; a device that
    needs a moment after the connection gets ``pause_after_connect_s``."""
    from daq.config.profiles import load_modbus_profile
    from drivers.errors import DeviceException
    from simulators.modbus_meter import ModbusMeterSimulator

    sim = ModbusMeterSimulator(load_modbus_profile("sdm630"))
    async with sim:
        sim.faults.exception_code = 6
        strict = PymodbusTcpReader("127.0.0.1", sim.port, 0.5)
        patient = PymodbusTcpReader("127.0.0.1", sim.port, 0.5, retries_on_busy=5,
                                    busy_delay_s=0.05, pause_after_connect_s=0.2)
        try:
            with pytest.raises(DeviceException) as info:
                await strict.read_registers(1, 4, 0, 2)
            assert info.value.code == 6

            async def not_busy_soon() -> None:
                await asyncio.sleep(0.3)
                sim.faults.exception_code = None

            clear = asyncio.create_task(not_busy_soon())
            t0 = asyncio.get_running_loop().time()
            assert len(await patient.read_registers(1, 4, 0, 2)) == 2
            assert asyncio.get_running_loop().time() - t0 >= 0.3  # waited out the busy spell
            await clear
            t0 = asyncio.get_running_loop().time()
            await patient.close()
            await patient.read_registers(1, 4, 0, 2)  # reconnects: pauses first
            assert asyncio.get_running_loop().time() - t0 >= 0.2
        finally:
            await strict.close()
            await patient.close()


def lose_cancellations(reader: PymodbusTcpReader) -> list[int]:
    """Make the reader's pymodbus client behave as Python 3.11's ``asyncio.wait_for`` does
    when a cancellation arrives with the response: return the response, drop the
    cancellation. Returns a list that counts the requests made."""
    client = reader._client  # the test imitates pymodbus itself
    assert client is not None
    real = client.read_input_registers
    calls: list[int] = []

    async def read_input_registers(*args: object, **kwargs: object) -> object:
        calls.append(1)
        request = asyncio.ensure_future(real(*args, **kwargs))  # type: ignore[arg-type]
        try:
            return await asyncio.shield(request)
        except asyncio.CancelledError:
            return await request  # the bug: the cancellation is lost, the response returned

    client.read_input_registers = read_input_registers  # type: ignore[method-assign]
    return calls


async def test_a_cancellation_pymodbus_loses_still_cancels_the_read() -> None:
    """The reader raises ``CancelledError`` again when pymodbus returns a response although
    the task was cancelled; a poll loop (the gateway's coordinator) then stops."""
    profile = load("sdm630")
    async with serving(MiniModbusServer(register_image(profile.channels, SDM630_VALUES))) as srv, \
            device_for(srv.port, profile.channels) as dev:
        reader = dev.reader
        assert isinstance(reader, PymodbusTcpReader)
        await reader.connect()
        calls = lose_cancellations(reader)

        stop = False  # ends the loop should the cancellation be lost (no hanging test)

        async def poll_forever() -> None:
            while not stop:
                await dev.poll()

        task = asyncio.create_task(poll_forever())
        for _ in range(1000):
            if calls:
                break
            await asyncio.sleep(0.001)
        assert calls, "no request was made"
        task.cancel()
        await asyncio.wait([task], timeout=2.0)
        stop = True
        lost = not task.done()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not lost, "the cancellation was lost: polling went on"
        assert task.cancelled()


async def test_garbage_from_a_device_is_not_a_wall_of_pymodbus_errors(
        caplog: pytest.LogCaptureFixture) -> None:
    """A device (or converter) answering garbage: each poll fails with a reason, and pymodbus's
    own ERROR lines with hex dumps (several per request) stay quiet unless a program chose a
    level for the ``pymodbus`` logger (``daq -vv``)."""
    import logging

    from simulators.modbus_meter import ModbusMeterSimulator

    caplog.set_level(logging.DEBUG, logger="gateway")
    channels = [c for c in load("sdm630").channels if c.id in ("voltage_l1", "voltage_l2")]
    logging.getLogger("pymodbus").setLevel(logging.NOTSET)  # as a program that set nothing
    sim = ModbusMeterSimulator(load("sdm630"))
    await sim.start()
    try:
        sim.faults.garbage = b"\x00\x01\x00\x00\x00\x06\x01\x04\x03garbage\xff\xfe"
        async with device_for(sim.port, channels, timeout_s=0.3) as dev:
            for _ in range(3):
                results = await dev.poll()
                assert all(r.error is not None and r.error.reason in ("protocol", "timeout")
                           for r in results)
    finally:
        await sim.stop()
    assert [r for r in caplog.records if r.name.startswith("pymodbus")] == []
