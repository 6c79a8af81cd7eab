"""Device probing on a fake Snapdragon 865 sysfs, and core choice."""

from __future__ import annotations

import pytest

from seaformer_deploy.cli.common import flag
from seaformer_deploy.devices import LocalDevice
from seaformer_deploy.devices.probe import CpuCore, Topology, choose_core
from seaformer_deploy.errors import UserError

SD865 = [(1_804_800, "0xd05")] * 4 + [(2_419_200, "0xd0d")] * 3 + [(2_841_600, "0xd0d")]


def fake_sysfs(root, cores=SD865, governor="schedutil"):
    cpu = root / "sys/devices/system/cpu"
    cpu.mkdir(parents=True)
    (cpu / "online").write_text(f"0-{len(cores) - 1}\n")
    info = []
    for i, (khz, part) in enumerate(cores):
        freq = cpu / f"cpu{i}/cpufreq"
        freq.mkdir(parents=True)
        (freq / "cpuinfo_max_freq").write_text(f"{khz}\n")
        (freq / "cpuinfo_min_freq").write_text("300000\n")
        (freq / "scaling_cur_freq").write_text(f"{khz // 2}\n")
        (freq / "scaling_governor").write_text(f"{governor}\n")
        info += [f"processor\t: {i}", "CPU implementer\t: 0x41", f"CPU part\t: {part}", ""]
    for z, (kind, milli) in enumerate([("cpu-1-7-usr", 41300), ("skin-therm", 33000)]):
        zone = root / f"sys/class/thermal/thermal_zone{z}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(f"{milli}\n")
    (root / "sys/class/power_supply/battery").mkdir(parents=True)
    (root / "sys/class/power_supply/battery/temp").write_text("312\n")
    (root / "proc").mkdir()
    (root / "proc/loadavg").write_text("0.52 0.61 0.70 1/321 4242\n")
    (root / "proc/cpuinfo").write_text("\n".join(info + ["Hardware\t: Qualcomm SM8250"]) + "\n")
    return root


def test_snapdragon_865_topology_and_prime_core(tmp_path):
    device = LocalDevice(sysfs_root=fake_sysfs(tmp_path))
    info = device.probe()
    topo = info.topology
    assert [c.index for c in topo.cores] == list(range(8))
    assert [c.core_type for c in topo.cores] == ["Cortex-A55"] * 4 + ["Cortex-A77"] * 4
    assert topo.core(7).max_khz == 2_841_600 and topo.cpu_model == "Qualcomm SM8250"
    choice = device.choose_core(info)
    assert choice.core == 7 and "2.84 GHz" in choice.reason and "Cortex-A77" in choice.reason


def test_state_reads_governor_frequency_thermal_load(tmp_path):
    state = LocalDevice(sysfs_root=fake_sysfs(tmp_path)).state()
    assert state.governors[7] == "schedutil" and state.cur_khz[7] == 1_420_800
    assert state.thermal_c == {"thermal_zone0:cpu-1-7-usr": 41.3,
                               "thermal_zone1:skin-therm": 33.0}
    assert state.battery_c == 31.2 and state.loadavg == (0.52, 0.61, 0.70)
    assert state.max_temperature() == 41.3


def test_equal_cores_avoid_cpu0(tmp_path):
    device = LocalDevice(sysfs_root=fake_sysfs(tmp_path, cores=[(2_000_000, "0xd0b")] * 4))
    choice = device.choose_core(device.probe())
    assert choice.core == 3 and "cpu0 avoided" in choice.reason


def test_no_frequency_data_still_avoids_cpu0():
    topo = Topology([CpuCore(i, None, None, None, None, None) for i in range(2)], None, None)
    assert choose_core(topo).core == 1
    single = Topology([CpuCore(0, None, None, None, None, None)], None, None)
    assert choose_core(single).core == 0


def test_core_override_is_validated(tmp_path):
    device = LocalDevice(sysfs_root=fake_sysfs(tmp_path))
    info = device.probe()
    assert device.choose_core(info, 2).core == 2
    with pytest.raises(UserError, match="not an online CPU") as raised:
        device.choose_core(info, 9)
    assert raised.value.field == "core" and str(raised.value).startswith("core 9 is not")
    assert raised.value.render(flag).startswith("--core 9 is not")


def test_this_machine_probes():
    device = LocalDevice()
    info = device.probe()
    assert info.topology.cores and device.choose_core(info).core in [
        c.index for c in info.topology.cores]
    assert device.state().time > 0
