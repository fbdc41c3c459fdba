"""The Modbus RTU driver (our codec + our transport) on a real pty and on RTU-over-TCP,
against :class:`RtuBusSimulator` with two meters (unit 1: SDM630, unit 2: DTSU666); plus
pymodbus's own async RTU client against the same simulator, as an independent check."""

from __future__ import annotations

import asyncio
import os
import struct
import time
import tty
from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusSerialClient

from daq.config.profiles import Profile, load_profile, profile_dirs
from drivers.errors import (
    DeviceConnectionError,
    DeviceException,
    DeviceProtocolError,
    DeviceTimeout,
)
from drivers.modbus.codec import (
    ReadRequest,
    ReadResponse,
    decode_value,
    encode_rtu,
)
from drivers.modbus.driver import ChannelResult, ModbusDriver, RegisterReader
from drivers.modbus.rtu import RtuReader
from drivers.result import engineering_value
from drivers.transport import SerialSettings, TcpSettings
from simulators.modbus_meter import ModbusMeterSimulator
from simulators.modbus_rtu import RtuBusSimulator

TIMEOUT_S = 0.15  # short: every silence test waits one timeout



def modbus_profile(name: str) -> Profile:
    profile = load_profile(name, profile_dirs())
    assert isinstance(profile, Profile)
    return profile


SDM630 = modbus_profile("sdm630")
DTSU666 = modbus_profile("dtsu666")


def meters() -> dict[int, ModbusMeterSimulator]:
    return {
        1: ModbusMeterSimulator(SDM630, unit_id=1, seed=1),
        2: ModbusMeterSimulator(DTSU666, unit_id=2, seed=2),
    }


@pytest.fixture
async def bus() -> AsyncIterator[RtuBusSimulator]:
    async with RtuBusSimulator(meters()) as sim:
        yield sim


@pytest.fixture
async def reader(bus: RtuBusSimulator) -> AsyncIterator[RtuReader]:
    r = RtuReader(SerialSettings(bus.path, 115200, parity="E"), timeout_s=TIMEOUT_S)
    yield r
    await r.close()


def assert_truth(results: list[ChannelResult], sim: ModbusMeterSimulator) -> None:
    assert results
    for res in results:
        assert res.ok, (res.channel.id, res.error)
        assert res.value == sim.truth(res.channel.id, res.ts_ns), res.channel.id


def device(reader: RtuReader, unit: int, profile: Profile) -> ModbusDriver:
    return ModbusDriver.from_profile(reader, unit, profile)


async def test_reader_is_a_register_reader(reader: RtuReader) -> None:
    assert isinstance(reader, RegisterReader)
    assert not reader.connected
    await reader.connect()
    assert reader.connected


async def test_poll_equals_truth_for_both_units(bus: RtuBusSimulator, reader: RtuReader) -> None:
    for _ in range(3):
        assert_truth(await device(reader, 1, SDM630).poll(), bus.meters[1])
        assert_truth(await device(reader, 2, DTSU666).poll(), bus.meters[2])
    assert reader.transactions > 0
    assert reader.stray_frames == 0


async def test_two_tasks_share_the_bus(bus: RtuBusSimulator, reader: RtuReader) -> None:
    d1, d2 = device(reader, 1, SDM630), device(reader, 2, DTSU666)

    async def run(dev: ModbusDriver, sim: ModbusMeterSimulator) -> None:
        for _ in range(10):
            assert_truth(await dev.poll(), sim)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(run(d1, bus.meters[1]), name="poll-1")
        tg.create_task(run(d2, bus.meters[2]), name="poll-2")
    assert reader.stray_frames == 0
    assert reader.discarded_bytes == 0
    assert bus.replies == bus.requests == reader.transactions


async def test_frame_gap_is_respected() -> None:
    """At 9600 8E1 consecutive requests are ≥ 3.5 characters (≈ 4 ms) apart."""
    async with RtuBusSimulator(meters()) as bus:
        r = RtuReader(SerialSettings(bus.path, 9600, parity="E"), timeout_s=TIMEOUT_S,
                      min_gap_s=0.02)
        try:
            await r.read_registers(1, 4, 0, 2)
            t0 = time.perf_counter()
            for _ in range(5):
                await r.read_registers(1, 4, 0, 2)
            assert time.perf_counter() - t0 >= 5 * 0.02
        finally:
            await r.close()
    with pytest.raises(ValueError):
        RtuReader(SerialSettings("x", 9600), min_gap_s=0.001)  # below the line's silence


async def test_exception_response(bus: RtuBusSimulator, reader: RtuReader) -> None:
    with pytest.raises(DeviceException) as info:
        await reader.read_registers(1, 4, 0x7000, 2)  # no channel there
    assert info.value.code == 2
    assert info.value.function == 4
    bus.meters[2].faults.exception_code = 4
    with pytest.raises(DeviceException) as info:
        await reader.read_registers(2, 3, 0, 2)
    assert info.value.code == 4
    assert await reader.read_registers(1, 4, 0, 2)


async def test_busy_is_retried(bus: RtuBusSimulator) -> None:
    r = RtuReader(SerialSettings(bus.path, 115200), timeout_s=TIMEOUT_S, retries_on_busy=2,
                  busy_delay_s=0.01)
    try:
        bus.meters[1].faults.exception_code = 6
        with pytest.raises(DeviceException) as info:
            await r.read_registers(1, 4, 0, 2)
        assert info.value.code == 6
        assert bus.requests == 3  # first try + 2 retries

        async def unbusy() -> None:
            await asyncio.sleep(0.015)
            bus.meters[1].faults.exception_code = None

        task = asyncio.create_task(unbusy())
        assert len(await r.read_registers(1, 4, 0, 2)) == 2
        await task
    finally:
        await r.close()


async def test_silent_unit_times_out_other_unit_still_reads(
    bus: RtuBusSimulator, reader: RtuReader
) -> None:
    bus.meters[2].faults.silent = True
    results = await device(reader, 2, DTSU666).poll()
    assert all(isinstance(r.error, DeviceTimeout) for r in results)
    assert_truth(await device(reader, 1, SDM630).poll(), bus.meters[1])
    with pytest.raises(DeviceTimeout):
        await reader.read_registers(7, 4, 0, 2)  # nobody with unit 7 on the line


async def test_late_reply_is_dropped_not_taken_for_the_next(
    bus: RtuBusSimulator, reader: RtuReader
) -> None:
    bus.meters[2].faults.delay_s = TIMEOUT_S * 1.5
    with pytest.raises(DeviceTimeout):
        await reader.read_registers(2, 4, 0, 2)
    bus.meters[2].faults.delay_s = 0
    await asyncio.sleep(TIMEOUT_S)  # the late reply arrives between transactions
    assert_truth(await device(reader, 1, SDM630).poll(), bus.meters[1])
    assert reader.stray_frames == 1


async def test_a_late_reply_is_not_taken_for_the_next_request_to_the_same_unit(
    bus: RtuBusSimulator, reader: RtuReader
) -> None:
    # RTU replies carry no transaction id: a reply to A that comes after A timed out, while
    # B (same unit, same function, same size, other registers) waits, looks like B's reply
    bus.meters[2].faults.delay_s = TIMEOUT_S * 1.3
    with pytest.raises(DeviceTimeout):
        await reader.read_registers(2, 3, 0x2006, 2)  # A: phase A voltage, raw 0.1 V
    bus.meters[2].faults.delay_s = 0
    b = await reader.read_registers(2, 3, 0x101E, 2)  # B at once: import energy, kWh
    energy = struct.unpack(">f", struct.pack(">HH", *b))[0]
    assert energy == pytest.approx(bus.meters[2].truth("energy_import", time.time_ns()),
                                   rel=1e-3)  # not A's ~2300 (0.1 V)
    assert reader.stray_frames == 1  # A's late reply, recognised and dropped


async def test_corrupted_crc_is_a_protocol_error_then_recovers(
    bus: RtuBusSimulator, reader: RtuReader
) -> None:
    bus.faults.corrupt_crc = 1
    with pytest.raises(DeviceProtocolError, match="bad CRC or garbage"):
        await reader.read_registers(1, 4, 0, 2)
    assert_truth(await device(reader, 1, SDM630).poll(), bus.meters[1])


async def test_truncated_reply_is_a_protocol_error_then_recovers(
    bus: RtuBusSimulator, reader: RtuReader
) -> None:
    bus.faults.truncate = 3
    with pytest.raises(DeviceProtocolError, match="bytes received"):
        await reader.read_registers(2, 4, 0, 2)
    assert_truth(await device(reader, 2, DTSU666).poll(), bus.meters[2])


async def test_garbage_before_reply_is_skipped(bus: RtuBusSimulator, reader: RtuReader) -> None:
    bus.faults.garbage = b"\x00\xff\x01\x04\x13\x37"
    assert_truth(await device(reader, 1, SDM630).poll(), bus.meters[1])
    assert reader.discarded_bytes >= len(bus.faults.garbage)
    bus.faults.clear()
    assert_truth(await device(reader, 2, DTSU666).poll(), bus.meters[2])


async def test_wrong_unit_reply_is_a_protocol_error() -> None:
    """A reply from unit 2 to a request for unit 1 (cross-talk, a misconfigured device)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    loop = asyncio.get_running_loop()
    os.set_blocking(master, False)

    def answer_as_unit_2() -> None:
        if len(os.read(master, 64)) >= 8:
            os.write(master, encode_rtu(ReadResponse(2, 4, (1, 2))))

    loop.add_reader(master, answer_as_unit_2)
    r = RtuReader(SerialSettings(os.ttyname(slave), 19200), timeout_s=TIMEOUT_S)
    try:
        with pytest.raises(DeviceProtocolError, match="unit 2"):
            await r.read_registers(1, 4, 0, 2)
    finally:
        await r.close()
        loop.remove_reader(master)
        os.close(master)
        os.close(slave)


async def test_port_that_cannot_be_opened() -> None:
    r = RtuReader(SerialSettings("/dev/pts/does-not-exist", 9600), timeout_s=TIMEOUT_S)
    with pytest.raises(DeviceConnectionError):
        await r.read_registers(1, 4, 0, 2)
    assert not r.connected


async def test_vanished_port_then_reconnect() -> None:
    sims = meters()
    bus = RtuBusSimulator(sims)
    await bus.start()
    r = RtuReader(SerialSettings(bus.path, 115200), timeout_s=TIMEOUT_S)
    try:
        assert len(await r.read_registers(1, 4, 0, 2)) == 2
        await bus.stop()  # the pty disappears, as a USB adapter pulled out
        with pytest.raises(DeviceConnectionError):
            await r.read_registers(1, 4, 0, 2)
        assert not r.connected
        with pytest.raises(DeviceConnectionError):
            await r.read_registers(1, 4, 0, 2)  # reopening fails: the path is gone
        async with RtuBusSimulator(sims) as bus2:  # the adapter is back (under a new path)
            r2 = RtuReader(SerialSettings(bus2.path, 115200), timeout_s=TIMEOUT_S)
            try:
                assert_truth(await device(r2, 1, SDM630).poll(), sims[1])
            finally:
                await r2.close()
    finally:
        await r.close()
        await bus.stop()


async def test_rtu_over_tcp() -> None:
    async with RtuBusSimulator(meters(), transport="tcp") as bus:
        port = bus.port
        r = RtuReader(TcpSettings("127.0.0.1", port), timeout_s=TIMEOUT_S)
        try:
            assert_truth(await device(r, 1, SDM630).poll(), bus.meters[1])
            assert_truth(await device(r, 2, DTSU666).poll(), bus.meters[2])
            bus.faults.corrupt_crc = 1
            with pytest.raises(DeviceProtocolError):
                await r.read_registers(1, 4, 0, 2)
            bus.meters[1].faults.drop_connection = True
            with pytest.raises(DeviceConnectionError):
                await r.read_registers(1, 4, 0, 2)
            assert_truth(await device(r, 2, DTSU666).poll(), bus.meters[2])  # reconnected
        finally:
            await r.close()
    r = RtuReader(TcpSettings("127.0.0.1", port), timeout_s=TIMEOUT_S)
    with pytest.raises(DeviceConnectionError):  # converter gone
        await r.read_registers(1, 4, 0, 2)


async def test_wire_delay_mode() -> None:
    line = SerialSettings("(sim)", 9600, parity="E")
    async with RtuBusSimulator(meters(), wire_settings=line) as bus:
        r = RtuReader(SerialSettings(bus.path, 9600, parity="E"), timeout_s=1.0)
        try:
            await r.read_registers(1, 4, 0, 2)
            t0 = time.perf_counter()
            for _ in range(5):
                await r.read_registers(1, 4, 0, 2)
            per = (time.perf_counter() - t0) / 5
        finally:
            await r.close()
    assert per >= line.wire_time_s(8 + 9)  # ≥ 19.5 ms of wire time per transaction
    assert per < 0.1


async def test_broadcast_and_bad_requests_are_refused(reader: RtuReader) -> None:
    with pytest.raises(DeviceProtocolError):
        await reader.read_registers(0, 4, 0, 2)
    with pytest.raises(DeviceProtocolError):
        await reader.read_registers(1, 6, 0, 2)
    with pytest.raises(DeviceProtocolError):
        await reader.read_registers(1, 4, 0, 126)


async def test_pymodbus_rtu_client_reads_the_pty_simulator(bus: RtuBusSimulator) -> None:
    client = AsyncModbusSerialClient(
        bus.path, baudrate=115200, timeout=1, retries=0, reconnect_delay=0
    )
    try:
        assert await client.connect()
        for unit, profile in ((1, SDM630), (2, DTSU666)):
            sim = bus.meters[unit]
            for ch in profile.channels:
                if ch.function == 4:
                    rr = await client.read_input_registers(
                        ch.address, count=ch.count, device_id=unit
                    )
                else:
                    rr = await client.read_holding_registers(
                        ch.address, count=ch.count, device_id=unit
                    )
                at_ns = time.time_ns()
                assert not rr.isError(), rr
                raw = decode_value(rr.registers, ch.type, ch.order)
                value = engineering_value(raw, ch.scale, ch.offset)
                assert value == sim.truth(ch.id, at_ns), ch.id
        bus.meters[1].faults.exception_code = 2
        rr = await client.read_input_registers(0, count=2, device_id=1)
        assert rr.isError()
        assert rr.exception_code == 2
    finally:
        client.close()


def test_request_bytes_are_the_spec_example() -> None:
    """Modbus over serial line spec / common vector: unit 1, FC4, 0x0000, 2 registers."""
    assert encode_rtu(ReadRequest(1, 4, 0, 2)).hex() == "01040000000271cb"
