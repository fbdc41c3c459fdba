"""Simulated devices: the drivers' sans-I/O codecs in the server role plus physical models."""

from simulators.fleet import MeterFleet, MeterSpec, run_meters, serve_forever
from simulators.meter import CHANNELS, MeterModel, ThreePhaseLoad
from simulators.modbus_meter import Faults, ModbusMeterSimulator
from simulators.modbus_rtu import BusFaults, RtuBusSimulator

__all__ = [
    "CHANNELS",
    "BusFaults",
    "Faults",
    "MeterFleet",
    "MeterModel",
    "MeterSpec",
    "ModbusMeterSimulator",
    "RtuBusSimulator",
    "ThreePhaseLoad",
    "run_meters",
    "serve_forever",
]
