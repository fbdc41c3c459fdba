"""The Modbus meter simulator against an independent Modbus implementation (pymodbus's client).

Values are decoded here with pymodbus's own register conversion and the profile's
``raw × scale + offset``; they must equal the simulator's truth at the response time exactly.
Requests pymodbus refuses to send (count > 125, bad headers) are written as raw bytes.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

from daq.config.profiles import (
    DataType,
    ModbusChannel,
    Profile,
    WordOrder,
    load_profile,
    profile_dirs,
)
from simulators import (
    MeterFleet,
    MeterSpec,
    ModbusMeterSimulator,
    ThreePhaseLoad,
    run_meters,
    serve_forever,
)

HOST = "127.0.0.1"

# Every data type and byte order, both function codes, a gap (8–9) and scaled integers.
CHANNELS: list[dict[str, Any]] = [
    {"id": "voltage_l1", "function": 4, "address": 0, "type": "f32", "order": "ABCD"},
    {"id": "voltage_l2", "function": 4, "address": 2, "type": "f32", "order": "CDAB"},
    {"id": "voltage_l3", "function": 4, "address": 4, "type": "f32", "order": "BADC", "scale": 0.1},
    {"id": "current_l1", "function": 4, "address": 6, "type": "f32", "order": "DCBA"},
    {"id": "current_l2", "function": 4, "address": 10, "type": "u16", "scale": 0.01},
    {"id": "current_l3", "function": 4, "address": 11, "type": "i32", "scale": 0.001},
    {
        "id": "power_total",
        "function": 4,
        "address": 13,
        "type": "i32",
        "order": "CDAB",
        "scale": 0.1,
    },
    {"id": "frequency", "function": 4, "address": 15, "type": "u16", "scale": 0.01, "offset": 40.0},
    {"id": "energy_import", "function": 4, "address": 20, "type": "f64"},
    {"id": "energy_export", "function": 4, "address": 24, "type": "u32", "scale": 0.01},
    {"id": "power_l1", "function": 4, "address": 26, "type": "u64", "order": "DCBA"},
    {"id": "power_factor", "function": 3, "address": 0, "type": "i16", "scale": 0.001},
    {"id": "power_l2", "function": 3, "address": 1, "type": "f32", "order": "CDAB"},
    {"id": "model_name", "function": 3, "address": 10, "type": "string", "length": 4},
]
UNITS = {"voltage": "V", "current": "A", "power": "W", "frequency": "Hz", "energy": "kWh"}


def profile_data(profile_id: str = "testmeter") -> dict[str, Any]:
    channels = [
        {"quantity": c["id"].split("_")[0], "unit": UNITS.get(c["id"].split("_")[0], "1"), **c}
        for c in CHANNELS
    ]
    return {
        "id": profile_id,
        "maker": "Test",
        "model": "TM-3",
        "protocol": "modbus",
        "channels": channels,
    }


PROFILE = Profile.model_validate(profile_data())


def client_decode(client: AsyncModbusTcpClient, regs: list[int], ch: ModbusChannel) -> Any:
    """Decode as a client would, with pymodbus's conversion (independent of our codec)."""
    dt = client.DATATYPE
    if ch.type is DataType.STRING:
        text = client.convert_from_registers(regs, dt.STRING)
        assert isinstance(text, str)
        return text.split("\x00", 1)[0].rstrip()
    if ch.order in (WordOrder.BADC, WordOrder.DCBA):  # bytes swapped within each register
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    word_order: Literal["big", "little"] = (
        "little" if ch.order in (WordOrder.CDAB, WordOrder.DCBA) else "big"
    )
    kind = {
        DataType.U16: dt.UINT16,
        DataType.I16: dt.INT16,
        DataType.U32: dt.UINT32,
        DataType.I32: dt.INT32,
        DataType.U64: dt.UINT64,
        DataType.F32: dt.FLOAT32,
        DataType.F64: dt.FLOAT64,
    }[ch.type]
    raw = client.convert_from_registers(regs, kind, word_order=word_order)
    assert isinstance(raw, int | float)
    if ch.scale == 1.0 and ch.offset == 0.0:
        return raw
    return raw * ch.scale + ch.offset


@asynccontextmanager
async def connected(port: int, timeout_s: float = 1.0) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient(HOST, port=port, timeout=timeout_s, retries=0, reconnect_delay=0)
    assert await client.connect()
    try:
        yield client
    finally:
        client.close()


async def read(
    client: AsyncModbusTcpClient, function: int, address: int, count: int, device_id: int = 1
) -> Any:
    if function == 3:
        return await client.read_holding_registers(address, count=count, device_id=device_id)
    return await client.read_input_registers(address, count=count, device_id=device_id)


@pytest.fixture
async def sim() -> AsyncIterator[ModbusMeterSimulator]:
    async with ModbusMeterSimulator(PROFILE, unit_id=1, seed=3) as simulator:
        yield simulator


@pytest.fixture
def profiles_dir(tmp_path: Path) -> Path:
    for name in ("alpha", "beta"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(profile_data(name)))
    return tmp_path


# -- values ------------------------------------------------------------------------------------


async def test_each_channel_reads_as_the_truth(sim: ModbusMeterSimulator) -> None:
    async with connected(sim.port) as client:
        for ch in PROFILE.channels:
            rr = await read(client, ch.function, ch.address, ch.count)
            at_ns = time.time_ns()
            assert not rr.isError(), rr
            assert client_decode(client, rr.registers, ch) == sim.truth(ch.id, at_ns), ch.id


async def test_one_block_read_covers_channels_and_gaps(sim: ModbusMeterSimulator) -> None:
    async with connected(sim.port) as client:
        for _ in range(3):
            rr = await read(client, 4, 0, 30)
            at_ns = time.time_ns()
            assert not rr.isError(), rr
            assert rr.registers[8:10] == [0, 0]  # inside the request, outside every channel
            for ch in PROFILE.channels:
                if ch.function == 4:
                    regs = rr.registers[ch.address : ch.address + ch.count]
                    assert client_decode(client, regs, ch) == sim.truth(ch.id, at_ns), ch.id
            served = sim.served("energy_import")
            assert served[-1][0] <= at_ns
            await asyncio.sleep(0.01)
        energies = [v for _, v in sim.served("energy_import")]
        assert energies == sorted(energies)
        assert len(sim.served("voltage_l1")) == 3
        assert sim.served("power_factor") == []


async def test_values_are_the_model_s(sim: ModbusMeterSimulator) -> None:
    async with connected(sim.port) as client:
        rr = await read(client, 4, 0, 30)
        at_ns = time.time_ns()
    assert not rr.isError()
    assert sim.truth("voltage_l1", at_ns) == pytest.approx(230, abs=10)
    assert sim.truth("voltage_l3", at_ns) == pytest.approx(230, abs=10)  # scale 0.1
    assert sim.truth("frequency", at_ns) == pytest.approx(50, abs=0.06)  # offset 40
    assert float(sim.truth("energy_import", at_ns)) > 1000
    assert sim.truth("energy_export", at_ns) == pytest.approx(ThreePhaseLoad(3).export_kwh)
    ((served_at, power),) = sim.served("power_l1")
    assert isinstance(power, int)  # u64, scale 1: integer watts
    assert served_at <= at_ns


async def test_strings_and_unmodelled_channels(sim: ModbusMeterSimulator) -> None:
    async with connected(sim.port) as client:
        rr = await read(client, 3, 10, 4)
        assert client_decode(client, rr.registers, PROFILE.channels[-1]) == "TM-3"
    assert sim.truth("model_name", time.time_ns()) == "TM-3"


async def test_truth_is_the_latest_served_at_or_before(sim: ModbusMeterSimulator) -> None:
    with pytest.raises(LookupError):
        sim.truth("voltage_l1", time.time_ns())
    with pytest.raises(LookupError):
        sim.truth("no_such_channel", time.time_ns())
    async with connected(sim.port) as client:
        for _ in range(5):
            await read(client, 4, 0, 2)
    history = sim.served("voltage_l1")
    assert len(history) == 5
    times = [t for t, _ in history]
    assert times == sorted(times)
    for t, v in history:
        assert sim.truth("voltage_l1", t) == v
        assert sim.truth("voltage_l1", t + 1) == v or t + 1 in times
    with pytest.raises(LookupError):
        sim.truth("voltage_l1", times[0] - 1)


async def test_history_is_bounded() -> None:
    async with (
        ModbusMeterSimulator(PROFILE, history=10) as simulator,
        connected(simulator.port) as client,
    ):
        for _ in range(25):
            await read(client, 4, 0, 2)
    history = simulator.served("voltage_l1")
    assert len(history) == 10
    assert simulator.truth("voltage_l1", history[0][0]) == history[0][1]
    with pytest.raises(LookupError):
        simulator.truth("voltage_l1", history[0][0] - 1)


async def test_part_of_a_channel_is_served_but_not_recorded(sim: ModbusMeterSimulator) -> None:
    async with connected(sim.port) as client:
        rr = await read(client, 4, 1, 2)  # second word of voltage_l1, first of voltage_l2
        assert not rr.isError()
        assert len(rr.registers) == 2
    assert sim.served("voltage_l1") == []
    assert sim.served("voltage_l2") == []


# -- exceptions --------------------------------------------------------------------------------


async def test_illegal_address_and_function(sim: ModbusMeterSimulator) -> None:
    async with connected(sim.port) as client:
        rr = await read(client, 4, 100, 10)  # no channel there
        assert rr.isError()
        assert rr.exception_code == 2
        rr = await read(client, 3, 3, 5)  # function 3 has no channel at 3…7
        assert rr.exception_code == 2
        rr = await client.write_register(0, 1, device_id=1)
        assert rr.isError()
        assert rr.exception_code == 1
        rr = await read(client, 4, 0, 2)  # the connection still serves
        assert not rr.isError()


async def raw_exchange(port: int, request: bytes, reply_len: int) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        async with asyncio.timeout(1):
            return await reader.readexactly(reply_len)
    finally:
        writer.close()
        await writer.wait_closed()


def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


@pytest.mark.parametrize(
    ("pdu", "reply"),
    [
        (bytes.fromhex("04 0000 007E"), bytes.fromhex("84 03")),  # count 126
        (bytes.fromhex("04 0000 0000"), bytes.fromhex("84 03")),  # count 0
        (bytes.fromhex("03 FFFF 0002"), bytes.fromhex("83 02")),  # past 0xFFFF
        (bytes.fromhex("04 0000"), bytes.fromhex("84 03")),  # too short
        (bytes.fromhex("2B 0E 01 00"), bytes.fromhex("AB 01")),  # read device id: unsupported
        (bytes.fromhex("04 0002 0002"), bytes.fromhex("04 04") + b"\x00" * 4),  # fine
    ],
)
async def test_raw_requests(sim: ModbusMeterSimulator, pdu: bytes, reply: bytes) -> None:
    got = await raw_exchange(sim.port, mbap(0x1234, 1, pdu), 7 + len(reply))
    assert got[:7] == mbap(0x1234, 1, reply)[:7]
    assert got[7:9] == reply[:2]


async def test_pipelined_requests_with_a_bad_one_between(sim: ModbusMeterSimulator) -> None:
    stream = (
        mbap(1, 1, bytes.fromhex("04 0000 0002"))
        + mbap(2, 1, bytes.fromhex("06 0000 0001"))
        + mbap(3, 1, bytes.fromhex("04 0002 0002"))
    )
    got = await raw_exchange(sim.port, stream, 13 + 9 + 13)
    assert got[0:2] == b"\x00\x01"
    assert got[7:9] == b"\x04\x04"
    assert got[13:22] == mbap(2, 1, b"\x86\x01")
    assert got[22:24] == b"\x00\x03"


async def test_bad_header_closes_the_connection(sim: ModbusMeterSimulator) -> None:
    reader, writer = await asyncio.open_connection(HOST, sim.port)
    writer.write(struct.pack(">HHHB", 1, 7, 6, 1) + bytes.fromhex("04 0000 0002"))
    async with asyncio.timeout(1):
        assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


async def test_wrong_unit_is_not_answered(sim: ModbusMeterSimulator) -> None:
    async with connected(sim.port, timeout_s=0.2) as client:
        with pytest.raises(ModbusIOException):
            await read(client, 4, 0, 2, device_id=7)


async def test_wrong_unit_can_answer_gateway_exception() -> None:
    simulator = ModbusMeterSimulator(PROFILE, unit_id=5, wrong_unit="exception")
    async with simulator, connected(simulator.port) as client:
        rr = await read(client, 4, 0, 2, device_id=1)
        assert rr.exception_code == 0x0B
        rr = await read(client, 4, 0, 2, device_id=5)
        assert not rr.isError()


# -- faults ------------------------------------------------------------------------------------


async def test_silent_device_times_out(sim: ModbusMeterSimulator) -> None:
    sim.faults.silent = True
    async with connected(sim.port, timeout_s=0.2) as client:
        with pytest.raises(ModbusIOException):
            await read(client, 4, 0, 2)
    assert sim.served("voltage_l1") == []
    sim.faults.silent = False
    async with connected(sim.port) as client:
        assert not (await read(client, 4, 0, 2)).isError()


@pytest.mark.parametrize("code", [4, 6, 0x0B])
async def test_injected_exception(sim: ModbusMeterSimulator, code: int) -> None:
    sim.faults.exception_code = code
    async with connected(sim.port) as client:
        rr = await read(client, 4, 0, 2)
        assert rr.isError()
        assert rr.exception_code == code
        sim.faults.clear()
        assert not (await read(client, 4, 0, 2)).isError()


async def test_dropped_connection(sim: ModbusMeterSimulator) -> None:
    sim.faults.drop_connection = True
    async with connected(sim.port, timeout_s=0.3) as client:
        with pytest.raises((ConnectionException, ModbusIOException)):
            await read(client, 4, 0, 2)
    assert sim.faults.drop_connection is False  # one-shot
    async with connected(sim.port) as client:
        assert not (await read(client, 4, 0, 2)).isError()


async def test_delay_holds_one_connection_only(sim: ModbusMeterSimulator) -> None:
    async with connected(sim.port) as slow, connected(sim.port) as fast:
        sim.faults.delay_s = 0.3
        t0 = time.monotonic()
        slow_read = asyncio.create_task(read(slow, 4, 0, 2))
        await asyncio.sleep(0.05)
        sim.faults.delay_s = 0.0
        rr = await read(fast, 4, 0, 2)
        assert not rr.isError()
        assert time.monotonic() - t0 < 0.25
        rr = await slow_read
        at_ns = time.time_ns()
        assert time.monotonic() - t0 >= 0.3
        assert client_decode(slow, rr.registers, PROFILE.channels[0]) == sim.truth(
            "voltage_l1", at_ns
        )


# -- load --------------------------------------------------------------------------------------


async def test_many_concurrent_clients(sim: ModbusMeterSimulator) -> None:
    ch = PROFILE.channels[0]

    async def poll(client: AsyncModbusTcpClient) -> None:
        for _ in range(20):
            rr = await read(client, 4, ch.address, ch.count)
            value = client_decode(client, rr.registers, ch)
            assert value in {v for _, v in sim.served(ch.id)[-100:]}

    clients = [
        AsyncModbusTcpClient(HOST, port=sim.port, timeout=2, retries=0, reconnect_delay=0)
        for _ in range(40)
    ]
    try:
        assert all(await asyncio.gather(*(c.connect() for c in clients)))
        await asyncio.gather(*(poll(c) for c in clients))
    finally:
        for c in clients:
            c.close()
    assert sim.connections == 40
    assert sim.requests == 800
    assert len(sim.served(ch.id)) == 800


async def test_throughput(sim: ModbusMeterSimulator) -> None:
    """Thousands of requests per second: 8 raw connections, requests pipelined by 10."""
    n_conn, rounds, depth = 8, 50, 10
    request = b"".join(mbap(i, 1, bytes.fromhex("04 0000 001E")) for i in range(depth))
    reply_len = depth * (9 + 2 * 30)

    async def hammer() -> None:
        reader, writer = await asyncio.open_connection(HOST, sim.port)
        try:
            for _ in range(rounds):
                writer.write(request)
                await reader.readexactly(reply_len)
        finally:
            writer.close()
            await writer.wait_closed()

    t0 = time.perf_counter()
    await asyncio.gather(*(hammer() for _ in range(n_conn)))
    rate = n_conn * rounds * depth / (time.perf_counter() - t0)
    assert sim.requests == n_conn * rounds * depth
    assert rate > 2000, f"{rate:.0f} requests/s"


# -- fleets ------------------------------------------------------------------------------------


async def test_fleet_serves_meters_on_distinct_ports(profiles_dir: Path) -> None:
    specs = [
        MeterSpec("alpha", seed=1),
        MeterSpec("alpha", seed=2),
        MeterSpec("beta", unit_id=9, seed=1, name="main"),
    ]
    async with MeterFleet(specs, [profiles_dir]) as fleet:
        assert list(fleet) == ["alpha-1", "alpha-2", "main"]
        ports = {fleet[name].port for name in fleet}
        assert len(ports) == 3
        readings: dict[str, Any] = {}
        for name in fleet:
            sim = fleet[name]
            async with connected(sim.port) as client:
                rr = await read(client, 4, 20, 4, device_id=sim.unit_id)
                at_ns = time.time_ns()
                value = client_decode(client, rr.registers, PROFILE.channels[8])
                assert value == sim.truth("energy_import", at_ns)
                readings[name] = value
        assert readings["alpha-1"] != readings["alpha-2"]  # seeds differ
        assert readings["alpha-1"] == pytest.approx(readings["main"], abs=1.0)  # same seed
        assert fleet["main"].profile.id == "beta"
    with pytest.raises(OSError):  # stopped: nothing listens any more
        await asyncio.open_connection(HOST, fleet["main"].port)


async def test_fleet_rejects_a_port_in_use(profiles_dir: Path) -> None:
    async with MeterFleet([MeterSpec("alpha")], [profiles_dir]) as fleet:
        taken = fleet["alpha-1"].port
        second = MeterFleet([MeterSpec("beta"), MeterSpec("alpha", port=taken)], [profiles_dir])
        with pytest.raises(OSError):
            await second.start()
        with pytest.raises(OSError):  # the meter that did start was stopped again
            await asyncio.open_connection(HOST, second["beta-1"].port)


async def test_serve_forever_prints_each_meter(
    profiles_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = asyncio.create_task(serve_forever([MeterSpec("alpha", unit_id=3)], [profiles_dir]))
    try:
        out = ""
        for _ in range(100):
            await asyncio.sleep(0.01)
            out += capsys.readouterr().out
            if out:
                break
        assert out.startswith("alpha meter on 127.0.0.1:")
        assert out.endswith(" (unit 3)\n")
        port = int(out.split(":")[1].split()[0])
        async with connected(port) as client:
            assert not (await read(client, 4, 0, 2, device_id=3)).isError()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_names_are_unique(profiles_dir: Path) -> None:
    with pytest.raises(ValueError):
        MeterFleet([MeterSpec("alpha", name="x"), MeterSpec("beta", name="x")], [profiles_dir])


# -- the shipped profiles ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sdm630", "dtsu666"])
async def test_shipped_profiles_read_as_the_truth(name: str) -> None:
    profile = load_profile(name, profile_dirs())
    for function in {ch.function for ch in profile.channels}:
        assert function in (3, 4)
    async with (
        ModbusMeterSimulator(profile, seed=12) as simulator,
        connected(simulator.port) as client,
    ):
        for ch in profile.channels:  # one channel per request
            rr = await read(client, ch.function, ch.address, ch.count)
            at_ns = time.time_ns()
            assert client_decode(client, rr.registers, ch) == simulator.truth(ch.id, at_ns)
        # and blocks of up to 125 registers, with gaps, as a driver's read plan would ask
        channels = sorted(profile.channels, key=lambda c: c.address)
        start = channels[0].address
        block = [c for c in channels if c.address + c.count - start <= 125]
        count = max(c.address + c.count for c in block) - start
        rr = await read(client, block[0].function, start, count)
        at_ns = time.time_ns()
        values = {}
        for ch in block:
            regs = rr.registers[ch.address - start : ch.address - start + ch.count]
            values[ch.id] = client_decode(client, regs, ch)
            assert values[ch.id] == simulator.truth(ch.id, at_ns), ch.id
    truth = {ch.id: simulator.truth(ch.id, at_ns) for ch in profile.channels}
    for ch in profile.channels:
        assert ch.range is not None
        lo, hi = ch.range
        assert lo <= float(truth[ch.id]) <= hi, ch.id
    assert float(truth["voltage_l1"]) == pytest.approx(230, abs=10)
    assert float(truth["frequency"]) == pytest.approx(50, abs=0.06)
    assert 0.85 <= float(truth["power_factor"]) <= 0.99


async def test_run_meters_serves_consecutive_meters(capsys: pytest.CaptureFixture[str]) -> None:
    task = asyncio.create_task(run_meters("dtsu666", 0, count=2, unit_id=4, seed=1))
    try:
        lines: list[str] = []
        for _ in range(100):
            await asyncio.sleep(0.01)
            lines += capsys.readouterr().out.splitlines()
            if len(lines) == 2:
                break
        assert len(lines) == 2
        ports = []
        for line in lines:
            assert line.startswith("dtsu666 meter on 127.0.0.1:")
            assert line.endswith(" (unit 4)")
            ports.append(int(line.split(":")[1].split()[0]))
        assert len(set(ports)) == 2
        for port in ports:
            async with connected(port) as client:
                rr = await read(client, 3, 0x2006, 2, device_id=4)
                assert not rr.isError()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_profiles_the_simulator_cannot_serve_truthfully_are_refused() -> None:
    data = profile_data()
    data["channels"][1]["address"] = 1  # voltage_l2 now overlaps voltage_l1
    with pytest.raises(ValueError, match="overlap"):
        Profile.model_validate(data)
    data = profile_data()
    data["channels"][0]["scale"] = 0.0
    with pytest.raises(ValueError, match="scale must not be 0"):
        Profile.model_validate(data)
