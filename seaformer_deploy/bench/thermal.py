"""Thermal guard: start each block on a cool device, and flag blocks whose state drifted.

A phone that heats up lowers its frequency caps (cpufreq cooling devices reduce the policy's
``scaling_max_freq``), so the same artifact gets slower over a long bench. Before each block the
guard waits until the hottest CPU thermal zone is below ``max_celsius`` (polling the device),
after an optional fixed pause; after the block, it compares the states read before and after.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ..devices.probe import DeviceState


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


def cool_down(read_state: Callable[[], DeviceState], policy: ThermalPolicy,
              sleep: Callable[[float], None] = time.sleep) -> dict:
    """Pause, then wait for the CPU to cool below the limit. Returns what happened."""
    started = time.monotonic()
    if policy.pause_seconds > 0:
        sleep(policy.pause_seconds)
    state = read_state()
    first = celsius = cpu_celsius(state)
    timed_out = False
    while (policy.max_celsius is not None and celsius is not None
           and celsius >= policy.max_celsius):
        if time.monotonic() - started >= policy.max_wait_seconds:
            timed_out = True
            break
        sleep(policy.poll_seconds)
        celsius = cpu_celsius(read_state())
    return {"waited_seconds": round(time.monotonic() - started, 2), "start_c": first,
            "end_c": celsius, "timed_out": timed_out}


def drift(before: DeviceState, after: DeviceState, core: int, policy: ThermalPolicy,
          guard: dict | None = None) -> list[str]:
    """Reasons to distrust a block: it ran hot, the CPU warmed a lot, or the pinned core's
    frequency cap or governor changed while it ran."""
    flags = []
    if guard and guard.get("timed_out"):
        flags.append(f"started at {guard['end_c']:.1f} °C, still above the "
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
