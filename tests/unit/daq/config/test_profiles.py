"""The shipped device profiles load, and a broken profile gives located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from daq.config.profiles import (
    BUILTIN_PROFILE_DIR,
    DataType,
    WordOrder,
    available_profiles,
    load_profile,
    load_profile_file,
    profile_dirs,
)
from daq.config.yamlsrc import SourceErrors

CHANNEL_IDS = [
    "voltage_l1", "voltage_l2", "voltage_l3", "current_l1", "current_l2", "current_l3",
    "power_l1", "power_l2", "power_l3", "power_total", "power_factor", "frequency",
    "energy_import", "energy_export",
]
QUANTITY_UNIT = {
    "voltage": ("voltage", "V"),
    "current": ("current", "A"),
    "power": ("active_power", "W"),
    "energy": ("active_energy", "kWh"),
    "power_factor": ("power_factor", "1"),
    "frequency": ("frequency", "Hz"),
}


def expected_quantity(channel_id: str) -> tuple[str, str]:
    if channel_id in QUANTITY_UNIT:
        return QUANTITY_UNIT[channel_id]
    return QUANTITY_UNIT[channel_id.split("_")[0]]


def test_builtin_profiles_are_listed() -> None:
    names = available_profiles(profile_dirs())
    assert {"sdm630", "dtsu666"} <= set(names)


@pytest.mark.parametrize("name", ["sdm630", "dtsu666"])
def test_shipped_profile_loads(name: str) -> None:
    profile = load_profile(name, profile_dirs())
    assert profile.id == name
    assert sorted(c.id for c in profile.channels) == sorted(CHANNEL_IDS)
    assert profile.sources, "a shipped profile names what it was checked against"
    for c in profile.channels:
        assert (c.quantity, c.unit) == expected_quantity(c.id), c.id
        assert c.type is DataType.F32
        assert c.order is WordOrder.ABCD
        assert c.range is not None
        lo, hi = c.range
        assert lo < hi
        meta = c.meta()
        assert (meta.id, meta.range_min, meta.range_max) == (c.id, lo, hi)


def test_sdm630_register_map() -> None:
    p = load_profile_file(BUILTIN_PROFILE_DIR / "sdm630.yaml")
    by_id = {c.id: c for c in p.channels}
    assert {c.function for c in p.channels} == {4}
    assert {i: by_id[i].address for i in CHANNEL_IDS} == {
        "voltage_l1": 0x00, "voltage_l2": 0x02, "voltage_l3": 0x04,
        "current_l1": 0x06, "current_l2": 0x08, "current_l3": 0x0A,
        "power_l1": 0x0C, "power_l2": 0x0E, "power_l3": 0x10, "power_total": 0x34,
        "power_factor": 0x3E, "frequency": 0x46, "energy_import": 0x48, "energy_export": 0x4A,
    }
    assert all(c.scale == 1.0 and c.offset == 0.0 for c in p.channels)


def test_dtsu666_register_map() -> None:
    p = load_profile_file(BUILTIN_PROFILE_DIR / "dtsu666.yaml")
    by_id = {c.id: c for c in p.channels}
    assert {c.function for c in p.channels} == {3}
    assert (by_id["voltage_l1"].address, by_id["voltage_l1"].scale) == (0x2006, 0.1)
    assert (by_id["current_l3"].address, by_id["current_l3"].scale) == (0x2010, 0.001)
    assert (by_id["power_total"].address, by_id["power_total"].scale) == (0x2012, 0.1)
    assert (by_id["power_l1"].address, by_id["power_l1"].scale) == (0x2014, 0.1)
    assert (by_id["power_factor"].address, by_id["power_factor"].scale) == (0x202A, 0.001)
    assert (by_id["frequency"].address, by_id["frequency"].scale) == (0x2044, 0.01)
    assert (by_id["energy_import"].address, by_id["energy_import"].scale) == (0x101E, 1.0)
    assert (by_id["energy_export"].address, by_id["energy_export"].scale) == (0x1028, 1.0)
    assert p.unconfirmed, "disagreements between sources are written down"


BROKEN = """\
id: broken
maker: Acme
model: X1
protocol: modbus
channels:
  - id: voltage_l1
    quantity: voltage
    unit: V
    function: 5
    address: 0
    type: f32
  - id: voltage_l2
    quantity: voltage
    unit: V
    function: 4
    address: 2
    type: float
    colour: red
"""


def test_broken_profile_gives_located_errors(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    with pytest.raises(SourceErrors) as info:
        load_profile_file(path)
    errors = {(e.line, e.field) for e in info.value.errors}
    assert (9, "channels[0].function") in errors
    assert (17, "channels[1].type") in errors
    assert (18, "channels[1].colour") in errors
    text = str(info.value)
    assert f"{path}:18: channels[1].colour: unknown field" in text


def test_profile_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("id: bad\nchannels: [\n  {id: x\n", encoding="utf-8")
    with pytest.raises(SourceErrors) as info:
        load_profile_file(path)
    assert info.value.errors[0].file == str(path)
    assert info.value.errors[0].line > 1


def test_string_channel_needs_length(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "id: s\nmaker: m\nmodel: m\nprotocol: modbus\nchannels:\n"
        "  - {id: serial, quantity: info, unit: '1', function: 3, address: 0, type: string}\n",
        encoding="utf-8",
    )
    with pytest.raises(SourceErrors, match="needs 'length'") as info:
        load_profile_file(path)
    assert info.value.errors[0].line == 6


def test_unknown_profile_names_known_ones() -> None:
    with pytest.raises(SourceErrors, match="sdm630"):
        load_profile("no-such-meter", profile_dirs())
