"""--max-temp on stock phones, whose shell user can read no thermal zone: the guard falls back to
the battery temperature and says so, and a device with neither sensor is refused up front.

The devices are fake sysfs trees read by the real probe script (``LocalDevice(sysfs_root)``):
zones whose ``type`` is there but whose ``temp`` is not readable, as SELinux leaves them."""

from __future__ import annotations

import pytest

from seaformer_deploy.bench.thermal import (
    ThermalError,
    ThermalPolicy,
    cool_down,
    drift,
    guard_sensor,
    require_sensor,
)
from seaformer_deploy.devices import LocalDevice
from seaformer_deploy.errors import UserError


def stock_phone(root, battery_decidegrees: int | None = 385, zone_temp: str | None = None):
    """Two CPU zones with no readable temperature (``zone_temp`` None: no file; "": the empty
    read a denied ``cat`` gives), and the battery."""
    for z, kind in enumerate(["cpu-1-7-usr", "cpu-0-0-usr"]):
        zone = root / f"sys/class/thermal/thermal_zone{z}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        if zone_temp is not None:
            (zone / "temp").write_text(zone_temp)
    battery = root / "sys/class/power_supply/battery"
    battery.mkdir(parents=True)
    if battery_decidegrees is not None:
        (battery / "temp").write_text(f"{battery_decidegrees}\n")
    return LocalDevice(sysfs_root=root)


def set_battery(root, decidegrees: int) -> None:
    (root / "sys/class/power_supply/battery/temp").write_text(f"{decidegrees}\n")


@pytest.mark.parametrize("zone_temp", [None, ""])
def test_no_readable_zone_waits_on_the_battery(tmp_path, zone_temp):
    device = stock_phone(tmp_path, 385, zone_temp)
    assert device.state().thermal_c == {} and device.state().battery_c == 38.5
    cooling = iter([372, 351])

    def sleep(seconds: float) -> None:          # the phone cools while the guard waits
        set_battery(tmp_path, next(cooling))

    policy = ThermalPolicy(max_celsius=36.0, poll_seconds=1)
    guard = cool_down(device.state, policy, sleep=sleep)
    assert (guard["sensor"], guard["start_c"], guard["end_c"], guard["timed_out"]) == (
        "battery", 38.5, 35.1, False)


def test_battery_guard_is_named_in_the_block_warnings(tmp_path):
    device = stock_phone(tmp_path, 312)
    policy = ThermalPolicy(max_celsius=40.0)
    guard = cool_down(device.state, policy, sleep=lambda s: None)
    flags = drift(device.state(), device.state(), 0, policy, guard)
    assert flags == ["no readable CPU thermal zone: --max-temp used the battery temperature "
                     "(31.2 °C), which lags the CPU by minutes"]


def test_battery_guard_that_gives_up_says_it_read_the_battery(tmp_path):
    device = stock_phone(tmp_path, 455)
    policy = ThermalPolicy(max_celsius=40.0, max_wait_seconds=0.0)
    guard = cool_down(device.state, policy, sleep=lambda s: None)
    assert guard["timed_out"]
    assert "started at 45.5 °C (battery), still above the 40.0 °C limit" in " | ".join(
        drift(device.state(), device.state(), 0, policy, guard))


def test_cpu_zones_win_over_the_battery(tmp_path):
    device = stock_phone(tmp_path, 300, zone_temp="52000\n")
    policy = ThermalPolicy(max_celsius=60.0)
    guard = cool_down(device.state, policy, sleep=lambda s: None)
    assert (guard["sensor"], guard["start_c"]) == ("cpu-zones", 52.0)
    assert drift(device.state(), device.state(), 0, policy, guard) == []
    assert require_sensor(device.state(), policy, "R58M1234") == "cpu-zones"


def test_no_sensor_at_all_is_refused_before_timing(tmp_path):
    device = stock_phone(tmp_path, battery_decidegrees=None)
    assert guard_sensor(device.state()) is None
    with pytest.raises(ThermalError) as refused:
        require_sensor(device.state(), ThermalPolicy(max_celsius=40.0), "R58M1234")
    assert isinstance(refused.value, UserError)
    assert str(refused.value) == (
        "--max-temp 40: R58M1234 exposes no readable CPU thermal zone and no battery "
        "temperature (expected /sys/class/thermal/thermal_zone*/temp or "
        "/sys/class/power_supply/battery/temp to be readable by the shell user); drop "
        "--max-temp, or use --block-pause SECONDS for a fixed pause.")


def test_without_max_temp_nothing_is_required_or_flagged(tmp_path):
    device = stock_phone(tmp_path, battery_decidegrees=None)
    policy = ThermalPolicy(pause_seconds=2)
    assert require_sensor(device.state(), policy, "R58M1234") is None
    guard = cool_down(device.state, policy, sleep=lambda s: None)
    assert guard["sensor"] is None and drift(device.state(), device.state(), 0, policy,
                                             guard) == []


def test_a_guard_that_read_nothing_is_never_silent():
    """Should the up-front check be skipped, the block still says the limit did nothing."""
    flags = drift(_empty(), _empty(), 0, ThermalPolicy(max_celsius=40.0),
                  {"waited_seconds": 0.0, "start_c": None, "end_c": None, "timed_out": False,
                   "sensor": None})
    assert flags == ["no readable CPU thermal zone and no battery temperature: --max-temp was "
                     "not applied to this block"]


def _empty():
    from seaformer_deploy.devices.probe import DeviceState

    return DeviceState(time=0.0)
