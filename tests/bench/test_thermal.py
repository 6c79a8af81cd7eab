"""The thermal guard's waiting and drift rules, on scripted device states."""

from __future__ import annotations

from seaformer_deploy.bench.thermal import ThermalPolicy, cool_down, cpu_celsius, drift
from seaformer_deploy.devices.probe import DeviceState


def state(cpu_c: float, cap_khz: int = 2_841_600, governor: str = "schedutil") -> DeviceState:
    return DeviceState(time=0.0, governors={7: governor}, scaling_khz={7: (300_000, cap_khz)},
                       thermal_c={"thermal_zone1:cpu-1-0-usr": cpu_c,
                                  "thermal_zone5:skin-therm": 30.0})


def test_cpu_zones_count_else_all_zones():
    assert cpu_celsius(state(41.5)) == 41.5
    assert cpu_celsius(DeviceState(0.0, thermal_c={"thermal_zone0:soc": 50.0})) == 50.0
    assert cpu_celsius(DeviceState(0.0)) is None


def test_waits_until_below_the_limit():
    temps = iter([60.0, 52.0, 44.0, 40.0])
    sleeps = []
    guard = cool_down(lambda: state(next(temps)), ThermalPolicy(max_celsius=45.0, poll_seconds=2),
                      sleep=sleeps.append)
    assert (guard["start_c"], guard["end_c"], guard["timed_out"]) == (60.0, 44.0, False)
    assert sleeps == [2, 2]


def test_fixed_pause_and_no_limit():
    sleeps = []
    guard = cool_down(lambda: state(80.0), ThermalPolicy(pause_seconds=3), sleep=sleeps.append)
    assert sleeps == [3] and guard["end_c"] == 80.0 and not guard["timed_out"]


def test_gives_up_after_the_longest_wait_and_flags_the_block():
    policy = ThermalPolicy(max_celsius=45.0, max_wait_seconds=0.0)
    guard = cool_down(lambda: state(70.0), policy, sleep=lambda s: None)
    assert guard["timed_out"]
    flags = drift(state(70.0), state(70.0), 7, policy, guard)
    assert flags == ["started at 70.0 °C, still above the 45.0 °C limit after 0 s"]


def test_drift_flags_heat_cap_and_governor_changes():
    policy = ThermalPolicy(drift_celsius=5.0)
    assert drift(state(40.0), state(44.0), 7, policy) == []
    flags = drift(state(40.0), state(47.0, cap_khz=2_419_200, governor="performance"), 7,
                  policy)
    assert flags == ["CPU temperature rose 7.0 °C (40.0 -> 47.0)",
                     "cpu7 frequency cap changed 2842 -> 2419 MHz (thermal throttling?)",
                     "cpu7 governor changed schedutil -> performance"]


def test_state_round_trips_through_its_dict():
    original = state(41.0)
    original.loadavg = (0.5, 0.6, 0.7)
    assert DeviceState.from_dict(original.to_dict()) == original
