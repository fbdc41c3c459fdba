"""Any mix of simulators from one YAML file: ``daq simulate all SPEC.yaml``.

```yaml
modbus_tcp:                      # Modbus TCP meters, one port each (count: consecutive ports)
  - {profile: sdm630, port: 5020, count: 2}
modbus_rtu:                      # RS-485 lines of Modbus RTU meters: on a pty, or TCP (converter)
  - {transport: pty, meters: [{profile: sdm630, unit_id: 1}, {profile: dtsu666, unit_id: 2}]}
dlt645:                          # DL/T 645-2007 lines of meters by address
  - {transport: pty, meters: [{address: "558890213594"}]}
instruments:                     # laboratory instruments, each on its own TCP port or pty
  - {kind: scpi-dmm, transport: tcp, port: 5025, value: 5.0}
  - {kind: prt-readout, transport: pty, value: 25.0}       # value: temperature in °C
  - {kind: mtsics-balance, transport: tcp, value: 100.0}   # value: load in g
```
Errors are located (``FILE:LINE: field: message``) like the site file's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from daq.config.profiles import load_modbus_profile
from daq.config.yamlsrc import load_yaml, validated
from simulators.dlt645_meter import Dlt645LineSimulator, Dlt645MeterSimulator
from simulators.instruments import (
    MtSicsBalanceSimulator,
    PrtReadoutSimulator,
    ScpiDmmSimulator,
)
from simulators.modbus_meter import ModbusMeterSimulator
from simulators.modbus_rtu import RtuBusSimulator

Transport = Literal["tcp", "pty"]
Port = Annotated[int, Field(ge=0, le=65535)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModbusTcpSpec(_Strict):
    profile: str
    port: Port = 0
    count: Annotated[int, Field(ge=1, le=10_000)] = 1
    unit_id: Annotated[int, Field(ge=1, le=247)] = 1
    seed: int = 0


class RtuMeterSpec(_Strict):
    profile: str
    unit_id: Annotated[int, Field(ge=1, le=247)]
    seed: int = 0


class ModbusRtuSpec(_Strict):
    transport: Transport = "pty"
    port: Port = 0
    meters: Annotated[list[RtuMeterSpec], Field(min_length=1)]


class Dlt645MeterSpec(_Strict):
    address: Annotated[str, Field(pattern=r"^[0-9]{12}$")]
    seed: int = 0


class Dlt645Spec(_Strict):
    transport: Transport = "pty"
    port: Port = 0
    meters: Annotated[list[Dlt645MeterSpec], Field(min_length=1)]


class InstrumentSpec(_Strict):
    kind: Literal["scpi-dmm", "prt-readout", "mtsics-balance"]
    transport: Transport = "tcp"
    port: Port = 0
    value: float = 0.0


class MixSpec(_Strict):
    modbus_tcp: list[ModbusTcpSpec] = []
    modbus_rtu: list[ModbusRtuSpec] = []
    dlt645: list[Dlt645Spec] = []
    instruments: list[InstrumentSpec] = []


def load_mix(path: str | Path) -> MixSpec:
    return validated(MixSpec, load_yaml(path))


async def serve_mix(spec: MixSpec, say: Callable[[str], None] = print) -> None:
    """Start everything in ``spec``, say where each listens, serve until cancelled."""
    async with contextlib.AsyncExitStack() as stack:
        for m in spec.modbus_tcp:
            profile = load_modbus_profile(m.profile)
            for i in range(m.count):
                sim = ModbusMeterSimulator(profile, unit_id=m.unit_id, seed=m.seed + i,
                                           port=m.port + i if m.port else 0)
                await stack.enter_async_context(sim)
                say(f"modbus-tcp  {profile.id} unit {m.unit_id} on 127.0.0.1:{sim.port}")
        for r in spec.modbus_rtu:
            meters = {mm.unit_id: ModbusMeterSimulator(load_modbus_profile(mm.profile),
                                                       unit_id=mm.unit_id, seed=mm.seed)
                      for mm in r.meters}
            line = RtuBusSimulator(meters, transport=r.transport, port=r.port)
            await stack.enter_async_context(line)
            where = line.path if r.transport == "pty" else f"127.0.0.1:{line.port} (RTU)"
            units = ", ".join(f"{mm.profile} unit {mm.unit_id}" for mm in r.meters)
            say(f"modbus-rtu  {units} on {where}")
        for d in spec.dlt645:
            dlt = Dlt645LineSimulator([Dlt645MeterSimulator(dm.address, seed=dm.seed)
                                       for dm in d.meters], transport=d.transport, port=d.port)
            await stack.enter_async_context(dlt)
            where = dlt.path if d.transport == "pty" else f"127.0.0.1:{dlt.port}"
            say(f"dlt645      meters {', '.join(dm.address for dm in d.meters)} on {where}")
        for inst in spec.instruments:
            sim_i: ScpiDmmSimulator | PrtReadoutSimulator | MtSicsBalanceSimulator
            if inst.kind == "scpi-dmm":
                sim_i = ScpiDmmSimulator()
                sim_i.model.true_value = inst.value
            elif inst.kind == "prt-readout":
                sim_i = PrtReadoutSimulator(inst.value)
            else:
                sim_i = MtSicsBalanceSimulator()
                sim_i.set_load(inst.value)
            await stack.enter_async_context(sim_i)
            if inst.transport == "pty":
                where = sim_i.start_pty()
            else:
                host, port = await sim_i.start_tcp(port=inst.port)
                where = f"{host}:{port}"
            say(f"instrument  {inst.kind} on {where}")
        await asyncio.Event().wait()
