"""Text-instrument drivers against their simulators over real TCP (127.0.0.1) and a pty:
values equal what the simulator displayed, each fault gives its typed error, and the driver
recovers once the fault clears."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from daq.model import Quality, Reason
from drivers.errors import DeviceConnectionError, DeviceProtocolError, DeviceTimeout, DriverError
from drivers.text import (
    GenericTextDriver,
    GenericTextProfile,
    InstrumentError,
    InstrumentOutOfRange,
    MtSicsBalanceDriver,
    Opener,
    PrtReadoutDriver,
    ScpiDmmDriver,
    tcp_opener,
    tty_opener,
)
from drivers.text.scpi import DmmFunction
from simulators.instruments import (
    InstrumentModel,
    MtSicsBalanceSimulator,
    PrtReadoutSimulator,
    ScpiDmmSimulator,
)

TIMEOUT_S = 0.3


@pytest.fixture(params=["tcp", "pty"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def serve(sim: ScpiDmmSimulator | PrtReadoutSimulator | MtSicsBalanceSimulator,
                transport: str) -> Opener:
    if transport == "tcp":
        host, port = await sim.start_tcp()
        assert host == "127.0.0.1"
        return tcp_opener(host, port)
    sim.start_pty()

    def path() -> str:  # re-read at each reconnect: a hang-up brings a new pty
        assert sim.slave_path is not None
        return sim.slave_path

    return tty_opener(path)


@pytest.fixture
async def dmm(transport: str) -> AsyncIterator[tuple[ScpiDmmSimulator, ScpiDmmDriver]]:
    sim = ScpiDmmSimulator(InstrumentModel(10.0, "V", offset=2e-4, gain=3e-5, noise=2e-5,
                                           decimals=5, seed=1))
    driver = ScpiDmmDriver(await serve(sim, transport), timeout_s=TIMEOUT_S)
    yield sim, driver
    await driver.close()
    await sim.close()


@pytest.fixture
async def prt(transport: str) -> AsyncIterator[tuple[PrtReadoutSimulator, PrtReadoutDriver]]:
    sim = PrtReadoutSimulator(100.0)
    driver = PrtReadoutDriver(await serve(sim, transport), timeout_s=TIMEOUT_S)
    yield sim, driver
    await driver.close()
    await sim.close()


@pytest.fixture
async def balance(transport: str
                  ) -> AsyncIterator[tuple[MtSicsBalanceSimulator, MtSicsBalanceDriver]]:
    sim = MtSicsBalanceSimulator(InstrumentModel(0.0, "g", noise=0.003, decimals=2, seed=3),
                                 capacity=220.0, settling_s=0.15, stability_timeout_s=0.5)
    driver = MtSicsBalanceDriver(await serve(sim, transport), timeout_s=TIMEOUT_S,
                                 stable_timeout_s=1.0)
    yield sim, driver
    await driver.close()
    await sim.close()


async def raises(kind: type[DriverError], call: Callable[[], Awaitable[object]]) -> DriverError:
    awaitable = call()
    with pytest.raises(kind) as info:
        await awaitable
    return info.value


# -- DMM ----------------------------------------------------------------------------------


async def test_dmm_identify_configure_read(dmm: tuple[ScpiDmmSimulator, ScpiDmmDriver]) -> None:
    sim, drv = dmm
    idn = await drv.identify()
    assert (idn.maker, idn.model) == ("DAQSIM", "DMM6500S")
    await drv.configure(DmmFunction.VOLT_DC, 10)
    assert (sim.function, sim.range) == (DmmFunction.VOLT_DC, 10.0)
    for _ in range(3):
        value = await drv.read()
        assert value == sim.truth().displayed
        assert value == pytest.approx(10.0 * (1 + 3e-5) + 2e-4, abs=1e-4)
    sim.model.true_value = 1.5
    assert await drv.measure("VOLT:DC") == sim.truth().displayed


async def test_dmm_faults_and_recovery(dmm: tuple[ScpiDmmSimulator, ScpiDmmDriver]) -> None:
    sim, drv = dmm
    await drv.configure("VOLT:DC", 10)
    f = sim.faults

    f.no_reply = True
    assert (await raises(DeviceTimeout, drv.read)).reason is Reason.TIMEOUT
    f.clear()
    assert await drv.read() == sim.truth().displayed

    f.late_reply_s = TIMEOUT_S * 2
    await raises(DeviceTimeout, drv.read)
    f.clear()
    await asyncio.sleep(TIMEOUT_S * 2)  # the late reply arrives and is discarded
    assert await drv.read() == sim.truth().displayed

    f.garbage = True
    assert (await raises(DeviceProtocolError, drv.read)).reason is Reason.PROTOCOL
    f.clear()
    assert await drv.read() == sim.truth().displayed

    f.truncated = True
    await raises(DeviceTimeout, drv.read)
    f.clear()
    assert await drv.read() == sim.truth().displayed

    f.instrument_error = True
    err = await raises(InstrumentError, drv.read)
    assert err.reason is Reason.DEVICE_EXCEPTION
    assert isinstance(err, InstrumentError)
    assert err.code == "-230"
    err = await raises(InstrumentError, lambda: drv.configure("RES", 100))
    assert isinstance(err, InstrumentError)
    assert err.code == "-222"
    f.clear()
    assert await drv.read() == sim.truth().displayed

    f.disconnect = True
    assert (await raises(DeviceConnectionError, drv.read)).reason is Reason.CONNECTION
    f.clear()
    assert await drv.read() == sim.truth().displayed

    f.stuck = True
    before = sim.truth().displayed
    sim.model.true_value = 5.0
    assert await drv.read() == before  # a stuck instrument cannot be told from here
    f.clear()
    assert await drv.read() == pytest.approx(5.0, abs=1e-3)

    f.out_of_range = True
    err = await raises(InstrumentOutOfRange, drv.read)
    assert err.reason is Reason.OUT_OF_RANGE
    f.clear()
    sim.model.true_value = 13.0  # above 120 % of the 10 V range
    await raises(InstrumentOutOfRange, drv.read)
    sim.model.true_value = 9.0
    assert await drv.read() == sim.truth().displayed


async def test_dmm_undefined_header(dmm: tuple[ScpiDmmSimulator, ScpiDmmDriver]) -> None:
    _, drv = dmm
    await drv.link.send("FOO:BAR")
    assert await drv.next_error() == (-113, "Undefined header")
    assert await drv.next_error() == (0, "No error")


# -- PRT ----------------------------------------------------------------------------------


async def test_prt_cvd_values(prt: tuple[PrtReadoutSimulator, PrtReadoutDriver]) -> None:
    sim, drv = prt
    assert await drv.read_resistance() == pytest.approx(138.5055, abs=1e-4)
    assert await drv.read_resistance() == sim.truth().displayed
    sim.set_temperature(-100.0)
    assert await drv.read_resistance() == pytest.approx(60.2558, abs=1e-4)
    assert await drv.read_resistance(fetch=True) == sim.truth().displayed


async def test_prt_faults(prt: tuple[PrtReadoutSimulator, PrtReadoutDriver]) -> None:
    sim, drv = prt
    sim.faults.out_of_range = True  # open sensor
    await raises(InstrumentOutOfRange, drv.read_resistance)
    sim.faults.clear()
    sim.faults.garbage = True
    await raises(DeviceProtocolError, drv.read_resistance)
    sim.faults.clear()
    sim.faults.disconnect = True
    await raises(DeviceConnectionError, drv.read_resistance)
    sim.faults.clear()
    assert await drv.read_resistance() == sim.truth().displayed


# -- balance -------------------------------------------------------------------------------


async def test_balance_weighing(balance: tuple[MtSicsBalanceSimulator, MtSicsBalanceDriver]
                                ) -> None:
    sim, drv = balance
    sim.set_load(100.0)
    moving = await drv.weigh(stable=False)
    assert not moving.stable
    assert moving.quality is Quality.UNCERTAIN
    assert moving.value == sim.truth().displayed
    settled = await drv.weigh(stable=True)  # the balance waits for stability
    assert settled.stable
    assert settled.quality is Quality.GOOD
    assert settled.unit == "g"
    assert settled.value == sim.truth().displayed == pytest.approx(100.0, abs=0.02)


async def test_balance_faults(balance: tuple[MtSicsBalanceSimulator, MtSicsBalanceDriver]
                              ) -> None:
    sim, drv = balance
    sim.set_load(250.0)
    err = await raises(InstrumentOutOfRange, lambda: drv.weigh(stable=False))
    assert isinstance(err, InstrumentOutOfRange)
    assert err.direction == "over"
    sim.set_load(50.0)
    sim.settling_s = 5.0
    sim.set_load(60.0)
    err = await raises(InstrumentError, drv.weigh)  # no stability within its time-out: S I
    assert isinstance(err, InstrumentError)
    assert err.code == "S I"
    sim.settling_s = 0.0
    sim.faults.instrument_error = True
    err = await raises(InstrumentError, lambda: drv.weigh(stable=False))
    assert isinstance(err, InstrumentError)
    assert err.code == "EL"
    sim.faults.clear()
    sim.faults.no_reply = True
    await raises(DeviceTimeout, lambda: drv.weigh(stable=False))
    sim.faults.clear()
    sim.faults.truncated = True
    await raises(DeviceTimeout, lambda: drv.weigh(stable=False))
    sim.faults.clear()
    sim.faults.disconnect = True
    await raises(DeviceConnectionError, lambda: drv.weigh(stable=False))
    sim.faults.clear()
    result = await drv.weigh(stable=False)
    assert result.stable
    assert result.value == sim.truth().displayed


async def test_balance_syntax_error(balance: tuple[MtSicsBalanceSimulator, MtSicsBalanceDriver]
                                    ) -> None:
    _, drv = balance
    assert await drv.link.query("XYZ") == "ES"


# -- generic ------------------------------------------------------------------------------


async def test_generic_driver_on_a_balance(
        balance: tuple[MtSicsBalanceSimulator, MtSicsBalanceDriver]) -> None:
    sim, drv = balance
    profile = GenericTextProfile(
        command="SI", terminator="\r\n", unit="g", quantity="mass", scale=1e-3,
        reply_regex=r"S [SD]\s+(?P<value>[+-]?\d+\.\d+) (?P<unit>\S+)", error_regex=r"E[SLT]")
    generic = GenericTextDriver(drv.link._opener, profile, timeout_s=TIMEOUT_S)
    try:
        sim.set_load(42.0)
        sim.settling_s = 0.0
        reading = await generic.read()
        assert reading.raw == sim.truth().displayed
        assert reading.value == pytest.approx(reading.raw * 1e-3)
        sim.faults.instrument_error = True
        await raises(InstrumentError, generic.read)
        sim.faults.clear()
        sim.faults.garbage = True
        await raises(DeviceProtocolError, generic.read)
    finally:
        await generic.close()


async def test_connection_refused() -> None:
    sim = ScpiDmmSimulator()
    host, port = await sim.start_tcp()
    await sim.close()
    drv = ScpiDmmDriver(tcp_opener(host, port), timeout_s=TIMEOUT_S)
    await raises(DeviceConnectionError, drv.read)
    await drv.close()
