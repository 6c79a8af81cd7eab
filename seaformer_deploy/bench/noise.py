"""Where the timing noise comes from, in one line a user can act on.

What the device exposes, read at the edges of every block (``probe.DeviceState``): the CPU time
per core from ``/proc/stat`` (the hypervisor's steal on the pinned core, other cores' work),
runnable tasks, the pinned core's frequency; and what the samples show: the share of
iterations in a slow second mode, and how far the machine's speed wandered during the run (the
medians of successive stretches moving together, beyond their sampling error: on a shared VM
the whole distribution shifts by a few percent over seconds to minutes, which no within-run CI
covers and which separates two runs' medians by about as much). pyperf's ``system tune`` advice
and stability warnings are the model; here the advice names the cause that was measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..export.records import Record
from .stats import median_ci

STEAL_LIMIT = 0.02          # hypervisor steal on the pinned core worth naming
BUSY_LIMIT = 0.20           # another core's busy share worth naming
SLOW_LIMIT = 0.05           # share of iterations in the slow mode worth naming
FREQ_LIMIT = 0.05           # relative change of the pinned core's frequency worth naming
WANDER_LIMIT = 0.01         # speed wander (SD of stretch medians) worth naming: the 1 % target
WANDER_STRETCHES = 8        # stretches of consecutive iterations whose medians are compared
MIN_STRETCH = 10            # iterations per stretch at least, else no wander is estimated
_IDLE, _IOWAIT, _STEAL = 3, 4, 7


@dataclass
class SlowMode(Record):
    """Iterations well above the main mode: a sibling core's work, an interrupt, a migration."""

    share: float           # of iterations in the slow mode (0 when there is one mode)
    excess: float          # slow mode's median over the main mode, minus 1


def slow_mode(samples: np.ndarray) -> SlowMode:
    """The main mode is the half-sample mode of log time; its spread is read off its fast side
    alone (the slow side is what we look for); an iteration counts as slow beyond 4 spreads,
    and at least 3 %, above the mode."""
    x = np.sort(np.log(np.asarray(samples, dtype=np.float64)))
    if len(x) < 10:
        return SlowMode(0.0, 0.0)
    mode = half_sample_mode(x)
    fast_side = mode - x[x <= mode]
    spread = float(np.median(fast_side)) / 0.6745 if len(fast_side) else 0.0
    slow = x[x > mode + max(4 * spread, math.log(1.03))]
    if not len(slow):
        return SlowMode(0.0, 0.0)
    return SlowMode(len(slow) / len(x), math.exp(float(np.median(slow)) - mode) - 1)


def half_sample_mode(sorted_x: np.ndarray) -> float:
    """Bickel's half-sample mode: keep the shortest window holding half the points until two
    are left; robust to a slow mode holding up to half the iterations."""
    x = sorted_x
    while len(x) > 3:
        half = (len(x) + 1) // 2
        widths = x[half - 1:] - x[:len(x) - half + 1]
        start = int(np.argmin(widths))
        x = x[start:start + half]
    return float(x.mean()) if len(x) < 3 else float(
        x[:2].mean() if x[1] - x[0] < x[2] - x[1] else x[1:].mean())


@dataclass
class Wander(Record):
    """How much the speed itself moved during the run, beyond sampling error."""

    level: float           # SD of the stretch medians beyond sampling, / median (0: none seen)
    sampling: float        # RMS sampling error of one stretch's median, / median
    stretches: int         # how many stretches were compared (0: too few iterations)


def wander(samples: np.ndarray) -> Wander:
    """``samples`` in time order, split in up to 8 stretches of consecutive iterations: the
    variance of their medians less what sampling explains (each median's error from its
    distribution-free CI, a conservative estimate), as an SD relative to the median. A whole
    distribution that shifts moves every stretch's median, where a slow mode only moves some."""
    x = np.asarray(samples, dtype=np.float64)
    k = min(WANDER_STRETCHES, len(x) // MIN_STRETCH)
    centre = float(np.median(x)) if len(x) else 0.0
    if k < 4 or centre <= 0:
        return Wander(0.0, 0.0, 0)
    parts = [np.sort(p) for p in np.array_split(x, k)]
    medians = np.asarray([np.median(p) for p in parts]) / centre
    cis = [median_ci(p, 0.95) for p in parts]
    errors = np.asarray([(hi - lo) / (2 * 1.96) for lo, hi in cis])
    sampling = float(np.mean((errors / centre) ** 2))
    between = float(np.var(medians, ddof=1))
    # Named only when the stretches differ significantly (chi-square, 1 %): eight medians of
    # steady timings scatter by chance too, and a single-artifact bench has no other to outvote it.
    if sampling > 0 and (k - 1) * between / sampling < _chi2_99(k - 1):
        return Wander(0.0, math.sqrt(sampling), k)
    return Wander(math.sqrt(max(0.0, between - sampling)), math.sqrt(sampling), k)


def _chi2_99(df: int) -> float:
    """The chi-square distribution's 99th percentile (Wilson-Hilferty; within 0.3 % from 3 df),
    to spare the package a SciPy dependency for one quantile."""
    h = 2 / (9 * df)
    return df * (1 - h + 2.3263 * math.sqrt(h)) ** 3


@dataclass
class Noise(Record):
    """The noise sources measured during the blocks, and the diagnosis."""

    core: int
    steal: float | None                   # share of the pinned core's time taken by the host
    pinned_busy: float | None             # the pinned core's busy share (the runner's work)
    other_busy: dict[int, float] = field(default_factory=dict)   # the other cores' busy share
    runnable_max: int | None = None       # most runnable tasks seen besides the probe's shell
    frequency_mhz: tuple[float, float] | None = None   # pinned core: lowest, highest seen
    slow_share: float = 0.0               # of all iterations, in their artifact's slow mode
    slow_excess: float = 0.0              # how much slower that mode is (iteration-weighted)
    wander: float | None = None           # median of the artifacts' speed wander (Wander.level)
    causes: list[str] = field(default_factory=list)
    diagnosis: str = ""


def diagnose(blocks: list[dict], core: int, modes: list[tuple[int, SlowMode]],
             wanders: list[Wander] = ()) -> Noise:
    """``blocks``: the report's block records (states before and after); ``modes``: each
    artifact's sample count and slow mode; ``wanders``: each artifact's speed wander."""
    ticks = _block_ticks(blocks)
    noise = Noise(core=core, steal=None, pinned_busy=None)
    if core in ticks and sum(ticks[core]) > 0:
        t = ticks[core]
        noise.steal = t[_STEAL] / sum(t)
        noise.pinned_busy = _busy(t)
    noise.other_busy = {c: _busy(t) for c, t in sorted(ticks.items())
                        if c != core and sum(t) > 0}
    running = [s["procs_running"] for b in blocks for s in (b["state_before"], b["state_after"])
               if s.get("procs_running") is not None]
    noise.runnable_max = max(running) - 1 if running else None
    freqs = [s["cur_khz"].get(str(core)) for b in blocks
             for s in (b["state_before"], b["state_after"])]
    freqs = [f / 1e3 for f in freqs if f]
    noise.frequency_mhz = (min(freqs), max(freqs)) if freqs else None
    n = sum(count for count, _ in modes)
    if n:
        noise.slow_share = sum(count * m.share for count, m in modes) / n
        slow = sum(count * m.share for count, m in modes)
        noise.slow_excess = (sum(count * m.share * m.excess for count, m in modes) / slow
                             if slow else 0.0)
    levels = [w.level for w in wanders if w.stretches]
    noise.wander = float(np.median(levels)) if levels else None
    noise.causes = _causes(noise)
    noise.diagnosis = _diagnosis(noise)
    return noise


def _block_ticks(blocks: list[dict]) -> dict[int, list[int]]:
    """Per CPU, the ticks spent during the blocks (after minus before, summed)."""
    total: dict[int, list[int]] = {}
    for b in blocks:
        before = b["state_before"].get("cpu_ticks") or {}
        after = b["state_after"].get("cpu_ticks") or {}
        for cpu, end in after.items():
            start = before.get(cpu)
            if start is None:
                continue
            delta = [max(0, e - s) for e, s in zip(end, start)]
            acc = total.setdefault(int(cpu), [0] * len(delta))
            total[int(cpu)] = [a + d for a, d in zip(acc, delta)]
    return total


def _busy(t: list[int]) -> float:
    whole = sum(t)
    return (whole - t[_IDLE] - t[_IOWAIT] - t[_STEAL]) / whole if whole else 0.0


def _causes(noise: Noise) -> list[str]:
    """Each measured source above its limit, with what to do about it."""
    causes = []
    c = noise.core
    if noise.steal is not None and noise.steal >= STEAL_LIMIT:
        causes.append(f"the hypervisor took {100 * noise.steal:.0f} % of cpu{c} (steal): the "
                      f"VM's host is oversubscribed; compare only side by side (gate --ab) or "
                      f"use a dedicated machine")
    busy = {k: v for k, v in noise.other_busy.items() if v >= BUSY_LIMIT}
    if busy:
        worst = max(busy, key=busy.get)
        causes.append(f"cpu{worst} was {100 * busy[worst]:.0f} % busy with other work"
                      + (f" ({len(busy)} cores)" if len(busy) > 1 else "")
                      + "; close what runs there (top shows it): it shares caches, memory "
                        "bandwidth and, on a VM, perhaps a physical core with cpu" + str(c))
    if noise.runnable_max and noise.runnable_max > len(noise.other_busy) + 1:
        causes.append(f"{noise.runnable_max} other tasks were runnable at once: the machine is "
                      f"overloaded")
    if noise.wander is not None and noise.wander >= WANDER_LIMIT:
        causes.append(f"the speed itself wandered: medians of successive stretches of the run "
                      f"moved +-{100 * noise.wander:.1f} % (SD) beyond their sampling error, so "
                      f"another run's medians will differ by about as much whatever their CIs "
                      f"say; compare side by side in one run (gate --ab) or count instructions "
                      f"(--metric instructions)")
    if noise.frequency_mhz:
        lo, hi = noise.frequency_mhz
        if hi > 0 and (hi - lo) / hi >= FREQ_LIMIT:
            causes.append(f"cpu{c} ran between {lo:.0f} and {hi:.0f} MHz: lock its frequency "
                          f"(--lock-freq on a rooted phone, the performance governor here)")
    return causes


def _diagnosis(noise: Noise) -> str:
    mode = ""
    if noise.slow_share >= SLOW_LIMIT:
        mode = (f"{100 * noise.slow_share:.0f} % of iterations took a slow mode "
                f"(+{100 * noise.slow_excess:.0f} %)")
    if noise.causes:
        return (mode + ": " if mode else "") + "; ".join(noise.causes)
    if mode and noise.steal is None:
        return (mode + "; the device does not let us read /proc/stat, so steal and the other "
                "cores' load are unknown: check them with top while a bench runs")
    if mode:
        return (mode + ", with no cause the device exposes (steal, other cores, frequency "
                "all quiet): likely a sibling hyperthread or another tenant of the host, which "
                "nothing here can quiet; compare side by side in one run (gate --ab), give "
                "--max-seconds more time, or count instructions (--metric instructions)")
    if noise.steal is None:
        return "one timing mode; /proc/stat is not readable here (steal, other cores unknown)"
    return "quiet: no steal, no other busy core, steady frequency, one timing mode"
