"""Thermal guard: start each block on a cool device, and flag blocks whose state drifted.

A phone that heats up lowers its frequency caps (cpufreq cooling devices reduce the policy's
``scaling_max_freq``), so the same artifact gets slower over a long bench. Before each block the
guard waits until the hottest CPU thermal zone is below ``max_celsius`` (polling the device),
after an optional fixed pause; after the block, it compares the states read before and after.

Many stock phones let the shell user read no thermal zone at all (SELinux denies
``/sys/class/thermal``), but the battery's temperature is readable everywhere; the guard then
waits on the battery and says so in the block's drift flags, since the battery warms and cools
minutes behind the CPU. A device with neither is refused before any timing
(``require_sensor``): a ``--max-temp`` that does nothing must not look like one that held.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ..devices.probe import DeviceState
from ..errors import UserError

CPU_ZONES, BATTERY = "cpu-zones", "battery"     # the guard's sensors, as its dict records them


class ThermalError(UserError):
    pass


@dataclass(frozen=True)
class ThermalPolicy:
    max_celsius: float | None = None     # wait until the CPU zones are below this (None: no)
    pause_seconds: float = 0.0           # fixed pause before each block
    max_wait_seconds: float = 600.0      # give up waiting (and flag the block) after this
    poll_seconds: float = 5.0
    drift_celsius: float = 5.0           # a block that warmed the CPU more than this is flagged

    def to_dict(self) -> dict:
        return asdict(self)


def cpu_celsius(state: DeviceState) -> float | None:
    """The hottest CPU zone (types with 'cpu' in them, as on Qualcomm and most SoCs); all zones
    when none is named so; None when the device exposes no thermal zone."""
    cpu = [t for name, t in state.thermal_c.items() if "cpu" in name.lower()]
    temps = cpu or list(state.thermal_c.values())
    return max(temps) if temps else None


def guard_sensor(state: DeviceState) -> str | None:
    """What the guard can read on this device: the CPU zones, else the battery, else None."""
    if cpu_celsius(state) is not None:
        return CPU_ZONES
    return BATTERY if state.battery_c is not None else None


def sensor_celsius(state: DeviceState, sensor: str | None) -> float | None:
    return state.battery_c if sensor == BATTERY else cpu_celsius(state)


def require_sensor(state: DeviceState, policy: ThermalPolicy, device: str) -> str | None:
    """The sensor ``--max-temp`` will wait on; ThermalError when the device has none (call it
    once, before the first block). None when no limit is set."""
    if policy.max_celsius is None:
        return None
    sensor = guard_sensor(state)
    if sensor is None:
        raise ThermalError(
            f"--max-temp {policy.max_celsius:g}: {device} exposes no readable CPU thermal zone "
            f"and no battery temperature (expected /sys/class/thermal/thermal_zone*/temp or "
            f"/sys/class/power_supply/battery/temp to be readable by the shell user); drop "
            f"--max-temp, or use --block-pause SECONDS for a fixed pause.")
    return sensor


def cool_down(read_state: Callable[[], DeviceState], policy: ThermalPolicy,
              sleep: Callable[[float], None] = time.sleep) -> dict:
    """Pause, then wait for the CPU to cool below the limit. Returns what happened."""
    started = time.monotonic()
    if policy.pause_seconds > 0:
        sleep(policy.pause_seconds)
    state = read_state()
    sensor = guard_sensor(state)        # chosen once: the two scales must not mix mid-wait
    first = celsius = sensor_celsius(state, sensor)
    timed_out = False
    while (policy.max_celsius is not None and celsius is not None
           and celsius >= policy.max_celsius):
        if time.monotonic() - started >= policy.max_wait_seconds:
            timed_out = True
            break
        sleep(policy.poll_seconds)
        celsius = sensor_celsius(read_state(), sensor)
    return {"waited_seconds": round(time.monotonic() - started, 2), "start_c": first,
            "end_c": celsius, "timed_out": timed_out, "sensor": sensor}


def drift(before: DeviceState, after: DeviceState, core: int, policy: ThermalPolicy,
          guard: dict | None = None) -> list[str]:
    """Reasons to distrust a block: its guard read no CPU zone, it ran hot, the CPU warmed a
    lot, or the pinned core's frequency cap or governor changed while it ran."""
    flags = _sensor_flags(policy, guard)
    if guard and guard.get("timed_out"):
        where = " (battery)" if guard.get("sensor") == BATTERY else ""
        flags.append(f"started at {guard['end_c']:.1f} °C{where}, still above the "
                     f"{policy.max_celsius:.1f} °C limit after {guard['waited_seconds']:.0f} s")
    t0, t1 = cpu_celsius(before), cpu_celsius(after)
    if t0 is not None and t1 is not None and t1 - t0 > policy.drift_celsius:
        flags.append(f"CPU temperature rose {t1 - t0:.1f} °C ({t0:.1f} -> {t1:.1f})")
    cap0 = before.scaling_khz.get(core, (None, None))[1]
    cap1 = after.scaling_khz.get(core, (None, None))[1]
    if cap0 and cap1 and cap1 != cap0:
        flags.append(f"cpu{core} frequency cap changed {cap0 / 1e3:.0f} -> {cap1 / 1e3:.0f} MHz"
                     f"{' (thermal throttling?)' if cap1 < cap0 else ''}")
    g0, g1 = before.governors.get(core), after.governors.get(core)
    if g0 and g1 and g0 != g1:
        flags.append(f"cpu{core} governor changed {g0} -> {g1}")
    return flags


def _sensor_flags(policy: ThermalPolicy, guard: dict | None) -> list[str]:
    """A --max-temp that did not read the CPU says so (never a silent no-op)."""
    if policy.max_celsius is None or not guard:
        return []
    sensor = guard.get("sensor", CPU_ZONES)     # guards recorded before sensors were named
    if sensor == BATTERY:
        reading = f" ({guard['end_c']:.1f} °C)" if guard.get("end_c") is not None else ""
        return [f"no readable CPU thermal zone: --max-temp used the battery temperature"
                f"{reading}, which lags the CPU by minutes"]
    if sensor is None:
        return ["no readable CPU thermal zone and no battery temperature: --max-temp was not "
                "applied to this block"]
    return []
