"""Read coalescing: which channels share a request, and slicing responses back apart."""

from __future__ import annotations

from typing import Any

import pytest

from daq.config.profiles import BUILTIN_PROFILE_DIR, DataType, ModbusChannel, load_profile_file
from drivers.modbus.codec import ModbusProtocolError
from drivers.modbus.plan import ReadPlan, describe_plan, plan_reads


def ch(id_: str, address: int, type_: str = "f32", function: int = 4, **kw: Any) -> ModbusChannel:
    return ModbusChannel(id=id_, quantity="q", unit="u", function=function,  # type: ignore[arg-type]
                         address=address, type=DataType(type_), **kw)


def spans(plans: list[ReadPlan]) -> list[tuple[int, int, int]]:
    return [(p.function, p.address, p.count) for p in plans]


def test_empty() -> None:
    assert plan_reads([]) == []


def test_single_channel() -> None:
    (plan,) = plan_reads([ch("a", 10)])
    assert (plan.function, plan.address, plan.count, plan.offsets) == (4, 10, 2, (0,))


def test_adjacent_channels_merge() -> None:
    plans = plan_reads([ch("a", 0), ch("b", 2), ch("c", 4, "u16")])
    assert spans(plans) == [(4, 0, 5)]
    assert plans[0].offsets == (0, 2, 4)


@pytest.mark.parametrize(("gap", "merged"), [(0, True), (15, True), (16, True), (17, False)])
def test_gap_boundary(gap: int, merged: bool) -> None:
    # "a" ends at register 2; "b" starts after `gap` unused registers
    plans = plan_reads([ch("a", 0), ch("b", 2 + gap)], max_gap=16)
    assert len(plans) == (1 if merged else 2)
    if merged:
        assert plans[0].count == 2 + gap + 2


def test_max_gap_zero_merges_only_touching() -> None:
    plans = plan_reads([ch("a", 0), ch("b", 2), ch("c", 5)], max_gap=0)
    assert spans(plans) == [(4, 0, 4), (4, 5, 2)]


def test_max_count_125_boundary() -> None:
    # 0..122 (f32 at 123 ends at 125) fits exactly; one register more does not
    fits = plan_reads([ch("a", 0), ch("b", 123)], max_gap=200)
    assert spans(fits) == [(4, 0, 125)]
    too_long = plan_reads([ch("a", 0), ch("b", 124)], max_gap=200)
    assert spans(too_long) == [(4, 0, 2), (4, 124, 2)]


def test_many_adjacent_channels_split_at_max_count() -> None:
    channels = [ch(f"c{i}", 2 * i) for i in range(100)]  # 200 registers, contiguous
    plans = plan_reads(channels)
    assert spans(plans) == [(4, 0, 124), (4, 124, 76)]  # a channel is never split
    assert sum(len(p.channels) for p in plans) == 100


def test_custom_max_count() -> None:
    plans = plan_reads([ch(f"c{i}", 2 * i) for i in range(5)], max_count=4)
    assert spans(plans) == [(4, 0, 4), (4, 4, 4), (4, 8, 2)]


def test_channel_longer_than_max_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs 10 registers"):
        plan_reads([ch("s", 0, "string", length=10)], max_count=8)


@pytest.mark.parametrize(("max_gap", "max_count"), [(-1, 125), (16, 0), (16, 126)])
def test_bad_limits(max_gap: int, max_count: int) -> None:
    with pytest.raises(ValueError):
        plan_reads([ch("a", 0)], max_gap=max_gap, max_count=max_count)


def test_function_codes_are_never_mixed_and_ordered() -> None:
    channels = [ch("in", 0, function=4), ch("hold", 0, function=3), ch("hold2", 2, function=3)]
    plans = plan_reads(channels)
    assert spans(plans) == [(3, 0, 4), (4, 0, 2)]
    assert [c.id for c in plans[0].channels] == ["hold", "hold2"]


def test_deterministic_regardless_of_input_order() -> None:
    channels = [ch("a", 40), ch("b", 0, "u16"), ch("c", 1), ch("d", 100, function=3)]
    assert plan_reads(channels) == plan_reads(list(reversed(channels)))


def test_overlapping_channels_share_registers() -> None:
    plans = plan_reads([ch("whole", 0, "u32"), ch("low", 1, "u16")])
    assert spans(plans) == [(4, 0, 2)]
    assert plans[0].split([0x1234, 0x5678]) == [[0x1234, 0x5678], [0x5678]]


def test_split() -> None:
    (plan,) = plan_reads([ch("a", 0), ch("b", 4, "u16"), ch("c", 5, "u64")])
    assert plan.count == 9
    regs = list(range(9))
    assert plan.split(regs) == [[0, 1], [4], [5, 6, 7, 8]]
    with pytest.raises(ModbusProtocolError):
        plan.split(regs[:-1])


def test_readplan_rejects_channel_outside() -> None:
    with pytest.raises(ValueError):
        ReadPlan(4, 0, 1, (ch("a", 0),), (0,))


def profile_plans(name: str, **kw: Any) -> list[ReadPlan]:
    profile = load_profile_file(BUILTIN_PROFILE_DIR / f"{name}.yaml")
    return plan_reads(profile.channels, **kw)


def test_sdm630_full_profile() -> None:
    plans = profile_plans("sdm630")
    # 0x0000-0x0011 (voltages, currents, phase powers); 34 unused registers up to 0x0034
    assert spans(plans) == [(4, 0x0000, 18), (4, 0x0034, 24)]
    assert [c.id for c in plans[0].channels] == [
        "voltage_l1", "voltage_l2", "voltage_l3", "current_l1", "current_l2", "current_l3",
        "power_l1", "power_l2", "power_l3",
    ]
    assert [c.id for c in plans[1].channels] == [
        "power_total", "power_factor", "frequency", "energy_import", "energy_export",
    ]
    assert plans[1].offsets == (0, 10, 18, 20, 22)
    assert describe_plan(plans) == [
        "FC4 0x0000+18 (9 channels: voltage_l1 … power_l3)",
        "FC4 0x0034+24 (5 channels: power_total … energy_export)",
    ]
    # with a wider gap the whole meter is one request of 76 registers
    (whole,) = profile_plans("sdm630", max_gap=34)
    assert (whole.address, whole.count, len(whole.channels)) == (0, 76, 14)
    assert describe_plan([whole]) == ["FC4 0x0000+76 (14 channels: voltage_l1 … energy_export)"]


def test_dtsu666_full_profile() -> None:
    plans = profile_plans("dtsu666")
    assert spans(plans) == [(3, 0x101E, 12), (3, 0x2006, 38), (3, 0x2044, 2)]
    assert describe_plan(plans)[2] == "FC3 0x2044+2 (1 channel: frequency)"


def test_one_request_per_channel() -> None:
    from daq.config.profiles import load_modbus_profile
    from drivers.modbus.plan import plan_device

    channels = load_modbus_profile("sdm630").channels
    plans = plan_device(channels, one_request_per_channel=True)
    assert len(plans) == len(channels)
    assert [(p.address, p.count) for p in plans] == [(c.address, c.count) for c in channels]
    assert len(plan_device(channels)) == 2
