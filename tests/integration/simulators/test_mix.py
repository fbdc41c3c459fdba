"""`daq simulate all SPEC`: the example mix starts, says where everything listens, and the
devices answer there."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from daq.config.yamlsrc import SourceErrors
from drivers.dlt645.link import Dlt645Link
from drivers.modbus.driver import PymodbusTcpReader
from drivers.transport import SerialSettings, open_serial
from simulators.mix import load_mix, serve_mix

REPO = Path(__file__).resolve().parents[3]


async def test_the_example_mix_serves_every_kind() -> None:
    lines: list[str] = []
    task = asyncio.create_task(serve_mix(load_mix(REPO / "config" / "simulators.yaml"),
                                         lines.append))
    try:
        for _ in range(200):
            if len(lines) == 8:
                break
            await asyncio.sleep(0.01)
        assert len(lines) == 8, lines
        tcp = next(x for x in lines if x.startswith("modbus-tcp  sdm630"))
        port = int(tcp.rsplit(":", 1)[1])
        reader = PymodbusTcpReader("127.0.0.1", port, 1.0)
        try:
            regs = await reader.read_registers(1, 4, 0, 2)
            assert len(regs) == 2
        finally:
            await reader.close()
        dlt = next(x for x in lines if x.startswith("dlt645"))
        path = dlt.rsplit(" on ", 1)[1]
        client = Dlt645Link(lambda: open_serial(SerialSettings(path, 2400)), timeout_s=1.0)
        try:
            assert 200 < await client.read_value("000000000042", 0x02010100) < 260
        finally:
            await client.close()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_spec_errors_are_located(tmp_path: Path) -> None:
    p = tmp_path / "mix.yaml"
    p.write_text("dlt645:\n  - transport: pty\n    meters:\n      - {address: '12'}\n")
    with pytest.raises(SourceErrors) as info:
        load_mix(p)
    (err,) = info.value.errors
    assert str(err).startswith(f"{p}:4: dlt645[0].meters[0].address: String should match")
