"""What a device's CPU looks like and what state it is in, read from sysfs and procfs.

One POSIX shell script dumps every file we need, each under an ``@@@ <path>`` marker, in a
single round trip; the same script runs locally (``sh -c``) and on a phone (``adb shell``), and
the same parser reads its output. ``SFD_ROOT`` prefixes every path, so tests can point it at a
fake sysfs tree.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field

MARK = "@@@ "

PROBE_SCRIPT = r"""
R="${SFD_ROOT:-}"
dump() {
  for f in "$@"; do
    if [ -r "$f" ]; then printf '\n@@@ %s\n' "${f#$R}"; cat "$f" 2>/dev/null; fi
  done
}
dump "$R"/sys/devices/system/cpu/online
for c in "$R"/sys/devices/system/cpu/cpu[0-9]*; do
  dump "$c"/cpufreq/cpuinfo_max_freq "$c"/cpufreq/cpuinfo_min_freq "$c"/cpufreq/scaling_cur_freq \
       "$c"/cpufreq/scaling_governor "$c"/cpufreq/scaling_max_freq "$c"/cpufreq/scaling_min_freq \
       "$c"/topology/cluster_id "$c"/topology/physical_package_id "$c"/cpu_capacity
done
for z in "$R"/sys/class/thermal/thermal_zone[0-9]*; do dump "$z"/type "$z"/temp; done
dump "$R"/sys/class/power_supply/battery/temp "$R"/proc/loadavg "$R"/proc/cpuinfo
# CPU time per core (steal, other work) and runnable tasks, for the noise diagnosis; only the
# cpu and procs lines: a phone's intr line alone holds thousands of counters.
if [ -r "$R"/proc/stat ]; then
  printf '\n@@@ /proc/stat\n'; grep -E '^(cpu[0-9]* |procs_)' "$R"/proc/stat 2>/dev/null
fi
printf '\n@@@ uname\n'; uname -srm 2>/dev/null
"""

# ARM "CPU part" codes of /proc/cpuinfo, for naming core types in reports.
ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1", "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710", "0xd48": "Cortex-X2", "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3",
    "0xd80": "Cortex-A520", "0xd81": "Cortex-A720", "0xd82": "Cortex-X4",
}


def parse_snapshot(text: str) -> dict[str, str]:
    """``@@@ path`` sections -> {path: content}."""
    files: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line.startswith(MARK):
            current = line[len(MARK):].strip()
            files[current] = ""
        elif current is not None:
            files[current] += line + "\n"
    return {k: v.strip() for k, v in files.items()}


def parse_cpu_list(text: str) -> list[int]:
    """``0-3,6`` -> [0, 1, 2, 3, 6]."""
    cpus: list[int] = []
    for part in text.replace("\n", ",").split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cpus += range(int(lo), int(hi) + 1)
        elif part.strip():
            cpus.append(int(part))
    return cpus


def _int(files: dict[str, str], path: str) -> int | None:
    value = files.get(path, "").strip()
    return int(value) if re.fullmatch(r"-?\d+", value) else None


@dataclass
class CpuCore:
    index: int
    max_khz: int | None
    min_khz: int | None
    cluster: int | None
    capacity: int | None
    core_type: str | None


@dataclass
class Topology:
    cores: list[CpuCore]
    cpu_model: str | None
    kernel: str | None

    def core(self, index: int) -> CpuCore | None:
        return next((c for c in self.cores if c.index == index), None)

    def to_dict(self) -> dict:
        return asdict(self)


def topology(files: dict[str, str]) -> Topology:
    online = parse_cpu_list(files.get("/sys/devices/system/cpu/online", "0"))
    parts, model = _cpuinfo(files.get("/proc/cpuinfo", ""))
    cores = []
    for i in online:
        base = f"/sys/devices/system/cpu/cpu{i}"
        cluster = _int(files, f"{base}/topology/cluster_id")
        cores.append(CpuCore(
            index=i, max_khz=_int(files, f"{base}/cpufreq/cpuinfo_max_freq"),
            min_khz=_int(files, f"{base}/cpufreq/cpuinfo_min_freq"),
            cluster=cluster if cluster is not None and 0 <= cluster < 65535 else None,
            capacity=_int(files, f"{base}/cpu_capacity"),
            core_type=ARM_PARTS.get(parts.get(i, ""), parts.get(i))))
    return Topology(cores, model, files.get("uname") or None)


def _cpuinfo(text: str) -> tuple[dict[int, str], str | None]:
    """Per-processor ARM part codes, and a model name (x86 'model name' or ARM 'Hardware')."""
    parts: dict[int, str] = {}
    model = None
    processor = None
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "processor" and value.isdigit():
            processor = int(value)
        elif key == "CPU part" and processor is not None:
            parts[processor] = value.lower()
        elif key in ("model name", "Hardware") and model is None:
            model = value
    return parts, model


@dataclass
class CoreChoice:
    core: int
    reason: str


def choose_core(topo: Topology, requested: int | None = None) -> CoreChoice:
    """The fastest core: highest max frequency, then capacity; avoid cpu0 among equals.

    cpu0 takes most interrupts and housekeeping on Linux and Android, so when cores are equal
    (or nothing distinguishes them, as on a VM without cpufreq) another one is quieter.
    """
    indices = [c.index for c in topo.cores]
    if requested is not None:
        if requested not in indices:
            from ..errors import OptionError, option

            raise OptionError(f"{option('core')} {requested} is not an online CPU of this "
                              f"device (online: {', '.join(map(str, indices))}).")
        return CoreChoice(requested, "requested with --core")
    def speed(c: CpuCore) -> tuple[int, int]:
        return (c.max_khz or 0, c.capacity or 0)

    best = max(speed(c) for c in topo.cores)
    equals = [c.index for c in topo.cores if speed(c) == best]
    chosen = max([i for i in equals if i != 0] or equals)
    core = topo.core(chosen)
    if best[0]:
        what = f"highest max frequency ({best[0] / 1e6:.2f} GHz"
        what += f", {core.core_type})" if core.core_type else ")"
    elif best[1]:
        what = f"highest capacity ({best[1]})"
    else:
        what = "no frequency or capacity data, cores taken as equal"
    avoided = "; cpu0 avoided among equals" if 0 in equals and len(equals) > 1 else ""
    return CoreChoice(chosen, what + avoided)


@dataclass
class DeviceState:
    """Governor, frequencies, temperatures and load at one moment."""

    time: float
    governors: dict[int, str] = field(default_factory=dict)
    cur_khz: dict[int, int] = field(default_factory=dict)
    scaling_khz: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)
    thermal_c: dict[str, float] = field(default_factory=dict)
    battery_c: float | None = None
    loadavg: tuple[float, float, float] | None = None
    # /proc/stat per CPU: user nice system idle iowait irq softirq steal (clock ticks)
    cpu_ticks: dict[int, list[int]] = field(default_factory=dict)
    procs_running: int | None = None     # runnable tasks, the reading shell included

    def to_dict(self) -> dict:
        return {"time": self.time, "governors": {str(k): v for k, v in self.governors.items()},
                "cur_khz": {str(k): v for k, v in self.cur_khz.items()},
                "scaling_khz": {str(k): list(v) for k, v in self.scaling_khz.items()},
                "thermal_c": self.thermal_c, "battery_c": self.battery_c,
                "loadavg": list(self.loadavg) if self.loadavg else None,
                "cpu_ticks": {str(k): v for k, v in self.cpu_ticks.items()},
                "procs_running": self.procs_running}

    @classmethod
    def from_dict(cls, raw: dict) -> DeviceState:
        """The inverse of ``to_dict`` (states stored in blocks and reports)."""
        return cls(time=raw["time"],
                   governors={int(k): v for k, v in raw["governors"].items()},
                   cur_khz={int(k): v for k, v in raw["cur_khz"].items()},
                   scaling_khz={int(k): tuple(v) for k, v in raw["scaling_khz"].items()},
                   thermal_c=dict(raw["thermal_c"]), battery_c=raw["battery_c"],
                   loadavg=tuple(raw["loadavg"]) if raw["loadavg"] else None,
                   cpu_ticks={int(k): list(v) for k, v in raw.get("cpu_ticks", {}).items()},
                   procs_running=raw.get("procs_running"))

    def max_temperature(self) -> float | None:
        temps = list(self.thermal_c.values()) + ([self.battery_c] if self.battery_c else [])
        return max(temps) if temps else None


def device_state(files: dict[str, str]) -> DeviceState:
    state = DeviceState(time=time.time())
    for path, value in files.items():
        match = re.fullmatch(r"/sys/devices/system/cpu/cpu(\d+)/cpufreq/(\w+)", path)
        if match:
            cpu, name = int(match.group(1)), match.group(2)
            if name == "scaling_governor":
                state.governors[cpu] = value
            elif name == "scaling_cur_freq" and value.isdigit():
                state.cur_khz[cpu] = int(value)
            elif name in ("scaling_min_freq", "scaling_max_freq") and value.isdigit():
                lo, hi = state.scaling_khz.get(cpu, (None, None))
                state.scaling_khz[cpu] = (int(value), hi) if "min" in name else (lo, int(value))
    for path, value in files.items():
        match = re.fullmatch(r"/sys/class/thermal/(thermal_zone\d+)/temp", path)
        if match and re.fullmatch(r"-?\d+", value):
            zone_type = files.get(f"/sys/class/thermal/{match.group(1)}/type", match.group(1))
            state.thermal_c[f"{match.group(1)}:{zone_type}"] = _millidegrees(int(value))
    battery = _int(files, "/sys/class/power_supply/battery/temp")
    state.battery_c = battery / 10.0 if battery is not None else None   # tenths of a degree
    load = files.get("/proc/loadavg", "").split()
    if len(load) >= 3:
        state.loadavg = (float(load[0]), float(load[1]), float(load[2]))
    state.cpu_ticks, state.procs_running = _proc_stat(files.get("/proc/stat", ""))
    return state


def _proc_stat(text: str) -> tuple[dict[int, list[int]], int | None]:
    """Per-CPU ticks (the first eight fields: guest time is already in user) and
    procs_running; kernels before 2.6.11 have no steal field, taken as 0."""
    ticks: dict[int, list[int]] = {}
    running = None
    for line in text.splitlines():
        name, *values = line.split()
        if re.fullmatch(r"cpu\d+", name) and all(v.isdigit() for v in values[:8]):
            fields = [int(v) for v in values[:8]]
            ticks[int(name[3:])] = fields + [0] * (8 - len(fields))
        elif name == "procs_running" and values and values[0].isdigit():
            running = int(values[0])
    return ticks, running


def _millidegrees(value: int) -> float:
    """Thermal zones report millidegrees; a few drivers report degrees."""
    return value / 1000.0 if abs(value) >= 1000 else float(value)
