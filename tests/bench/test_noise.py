"""The noise diagnosis: the slow mode in the samples, and the causes read from /proc/stat and
cpufreq at the block edges."""

from __future__ import annotations

import numpy as np
import pytest

from seaformer_deploy.bench.noise import SlowMode, Wander, diagnose, slow_mode, wander
from seaformer_deploy.devices.probe import DeviceState, device_state, parse_snapshot

STAT = """cpu  22707 0 5611 22855 298 0 43 47 0 0
cpu0 6913 0 2007 16760 47 0 5 23 0 0
cpu1 15794 0 3603 6095 251 0 38 24 0 0
intr 1 2 3
procs_running 3
procs_blocked 0
"""


def test_proc_stat_is_parsed_per_cpu():
    state = device_state(parse_snapshot("@@@ /proc/stat\n" + STAT))
    assert state.cpu_ticks == {0: [6913, 0, 2007, 16760, 47, 0, 5, 23],
                               1: [15794, 0, 3603, 6095, 251, 0, 38, 24]}
    assert state.procs_running == 3
    again = DeviceState.from_dict(state.to_dict())
    assert again.cpu_ticks == state.cpu_ticks and again.procs_running == 3


def test_states_recorded_before_proc_stat_still_read():
    raw = DeviceState(time=1.0).to_dict()
    del raw["cpu_ticks"], raw["procs_running"]
    assert DeviceState.from_dict(raw).cpu_ticks == {}


def test_one_mode_is_no_slow_mode():
    x = 10 * np.exp(0.03 * np.random.default_rng(0).standard_normal(500))
    assert slow_mode(x).share < 0.01                 # the odd 4-sigma iteration at most


def test_two_modes_are_found_with_their_share_and_gap():
    rng = np.random.default_rng(1)
    x = 10 * np.exp(0.01 * rng.standard_normal(1000))
    slow = rng.random(1000) < 0.3
    x[slow] *= 1.25
    found = slow_mode(x)
    assert found.share == pytest.approx(0.3, abs=0.03)
    assert found.excess == pytest.approx(0.25, abs=0.02)


def block(before: dict[int, list[int]], after: dict[int, list[int]], khz=(2_400_000, 2_400_000),
          running=(1, 1), core=1) -> dict:
    def state(ticks, f, r):
        return DeviceState(time=0.0, cur_khz={core: f}, cpu_ticks=ticks,
                           procs_running=r).to_dict()
    return {"state_before": state(before, khz[0], running[0]),
            "state_after": state(after, khz[1], running[1])}


def ticks(user=0, idle=0, steal=0):
    return [user, 0, 0, idle, 0, 0, 0, steal]


def test_quiet_machine():
    b = block({0: ticks(), 1: ticks()}, {0: ticks(user=2, idle=98), 1: ticks(user=100)})
    noise = diagnose([b], 1, [(100, SlowMode(0.0, 0.0))])
    assert noise.causes == [] and noise.diagnosis.startswith("quiet")
    assert noise.pinned_busy == 1.0 and noise.other_busy == {0: 0.02}


def test_steal_busy_sibling_and_frequency_are_named():
    b = block({0: ticks(), 1: ticks()},
              {0: ticks(user=60, idle=40), 1: ticks(user=90, steal=10)},
              khz=(1_800_000, 2_400_000))
    noise = diagnose([b], 1, [(100, SlowMode(0.31, 0.4))])
    assert noise.steal == pytest.approx(0.10)
    text = noise.diagnosis
    assert text.startswith("31 % of iterations took a slow mode (+40 %)")
    assert "10 % of cpu1 (steal)" in text and "cpu0 was 60 % busy" in text
    assert "between 1800 and 2400 MHz" in text and "--lock-freq" in text


def test_slow_mode_without_a_visible_cause_says_so():
    b = block({0: ticks(), 1: ticks()}, {0: ticks(idle=100), 1: ticks(user=100)})
    noise = diagnose([b], 1, [(50, SlowMode(0.2, 0.3)), (50, SlowMode(0.0, 0.0))])
    assert noise.slow_share == pytest.approx(0.1) and noise.slow_excess == pytest.approx(0.3)
    assert "no cause the device exposes" in noise.diagnosis


def test_blocks_are_summed_and_a_device_without_proc_stat_is_unknown():
    b1 = block({1: ticks()}, {1: ticks(user=50, steal=50)})
    b2 = block({1: ticks(user=1000)}, {1: ticks(user=1100)})
    assert diagnose([b1, b2], 1, []).steal == pytest.approx(50 / 200)
    bare = {"state_before": DeviceState(0.0).to_dict(), "state_after": DeviceState(0.0).to_dict()}
    unknown = diagnose([bare], 1, [])
    assert unknown.steal is None and unknown.other_busy == {} and unknown.causes == []
    assert "/proc/stat is not readable" in unknown.diagnosis
    assert "steal and the other cores' load are unknown" in diagnose(
        [bare], 1, [(10, SlowMode(0.3, 0.2))]).diagnosis


# --- Speed wander: the whole distribution moving during the run. ---

def steady(n: int, seed: int, slow_share: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 10 * np.exp(0.05 * rng.standard_normal(n))
    x[rng.random(n) < slow_share] *= 1.25
    return x


def test_steady_timings_do_not_wander_even_with_a_slow_mode():
    for x in (steady(400, 2), steady(400, 3, slow_share=0.1)):
        found = wander(x)
        assert found.stretches == 8 and found.level == 0.0
        assert 0.005 < found.sampling < 0.02      # a 50-iteration median's error at 5 % CV


def test_chance_scatter_of_steady_stretches_is_rarely_called_wander():
    called = sum(wander(steady(n, seed)).level > 0 for seed in range(500) for n in (60, 400))
    assert called <= 10                           # the chi-square test's 1 %, and then some


def test_a_shifting_speed_is_measured_beyond_its_sampling_error():
    rng = np.random.default_rng(4)
    levels = 1 + 0.03 * np.array([1.5, -1, 0.5, -1.5, 1, -0.5, 0.2, -0.2])   # SD 3 %
    x = np.repeat(levels, 50) * steady(400, 5)
    found = wander(x)
    assert found.level == pytest.approx(0.03 * np.std([1.5, -1, .5, -1.5, 1, -.5, .2, -.2],
                                                      ddof=1), abs=0.006)
    assert wander(rng.permutation(x)).level == 0.0      # the same samples, out of time order


def test_too_few_iterations_have_no_wander():
    assert wander(steady(39, 6)) == Wander(0.0, 0.0, 0)
    assert wander(steady(40, 6)).stretches == 4


def test_wander_is_named_with_what_to_do_and_the_machine_is_not_called_quiet():
    b = block({0: ticks(), 1: ticks()}, {0: ticks(idle=100), 1: ticks(user=100)})
    one_mode = [(100, SlowMode(0.0, 0.0))] * 3
    wandering = [Wander(0.04, 0.004, 8), Wander(0.03, 0.004, 8), Wander(0.0, 0.0, 0)]
    noise = diagnose([b], 1, one_mode, wandering)
    assert noise.wander == pytest.approx(0.035)   # the median of those that were measured
    assert not noise.diagnosis.startswith("quiet")
    assert "moved +-3.5 % (SD)" in noise.diagnosis and "gate --ab" in noise.diagnosis
    small = diagnose([b], 1, one_mode, [Wander(0.004, 0.004, 8)] * 3)
    assert small.wander == pytest.approx(0.004) and small.diagnosis.startswith("quiet")
    assert diagnose([b], 1, one_mode).wander is None
