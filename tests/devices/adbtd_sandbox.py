"""The test device's filesystem and process sandbox, and its Snapdragon 865 profile.

Design (no chroot, no namespaces, nothing registered system-wide):

* The device filesystem is a host directory ``root``. Sync requests map any absolute device
  path into it (``/data/local/tmp/x`` -> ``<root>/data/local/tmp/x``; ``..`` cannot escape).
* Shell commands run as ``/bin/sh -c`` on the host with cwd ``<root>`` (the device's ``/``).
  Their text gets a documented *prefix rewrite*: an absolute path whose first component is a
  device top-level directory (``DEVICE_TOP_DIRS``: /data, /sdcard, /sys, /proc, /system, ...)
  is prefixed with ``<root>``. Host paths (/bin/sh, /dev/null, /usr) are left alone. Output
  goes through the reverse rewrite (``<root>`` removed), so ``pwd`` or a probe printing
  ``/sys/...`` paths shows device paths. Paths built at run time from pieces that are not
  literal absolute paths in the command text are not rewritten (known gap), and ``ls /``
  lists the host root.
* ``<root>/system/bin`` comes first on PATH and holds shims: getprop (reads the profile's
  properties), taskset (records the mask and runs the command unpinned: the host has 2 cores,
  the phone 8), uname (aarch64 kernel) and df (reports the configured free space).
* aarch64 ELF executables really run: an LD_PRELOAD hook (``adbtd_exec_hook.c``, built with
  the host ``cc`` on first use) turns execve of an aarch64 ELF into
  ``qemu-aarch64-static -L <sandbox root> ...`` (root/lib links to the cross sysroot), so the
  program sees device paths. See that file for why.
* sysfs/procfs are plain files generated from a ``Profile`` (per-policy cpufreq directories
  with ``cpuN/cpufreq`` symlinks as on a phone), writable by tests via ``write_file``.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEVICE_TOP_DIRS = ("data", "sdcard", "storage", "sys", "proc", "system", "vendor", "odm",
                   "product", "apex", "mnt", "config", "cache", "metadata")
QEMU = "/usr/bin/qemu-aarch64-static"
QEMU_LD_PREFIX = "/usr/aarch64-linux-gnu"


@dataclass
class Cpu:
    part: str            # /proc/cpuinfo "CPU part"
    variant: str
    max_khz: int
    policy: int          # first CPU of its cpufreq policy (cluster)
    cluster: int
    capacity: int
    min_khz: int = 300_000
    governor: str = "schedutil"


@dataclass
class Profile:
    """What the fake phone reports. ``sd865()`` is the default."""

    props: dict[str, str]
    cpus: list[Cpu]
    thermal: list[tuple[str, int]]       # (type, millidegrees C)
    battery_decidegrees: int = 285
    loadavg: str = "0.52 0.61 0.70 1/1432 12345"
    kernel_release: str = "4.19.113-perf+"
    hardware: str = "Qualcomm Technologies, Inc kona"
    df_total_kb: int = 113_058_636
    df_avail_kb: int = 98_188_800
    rooted: bool = False                 # an su binary (Magisk-style) in /system/bin


def sd865() -> Profile:
    """Snapdragon 865 (SM8250, "kona"): 4x A55 @1.80 GHz, 3x A77 @2.42 GHz, 1x A77 @2.84 GHz."""
    little = [Cpu("0xd05", "0x1", 1_804_800, 0, 0, 404) for _ in range(4)]
    big = [Cpu("0xd0d", "0x1", 2_419_200, 4, 1, 911) for _ in range(3)]
    prime = [Cpu("0xd0d", "0x1", 2_841_600, 7, 2, 1024)]
    props = {
        "ro.product.name": "OnePlus8Pro", "ro.product.model": "IN2023",
        "ro.product.device": "OnePlus8Pro", "ro.product.brand": "OnePlus",
        "ro.product.manufacturer": "OnePlus", "ro.soc.manufacturer": "Qualcomm",
        "ro.soc.model": "SM8250", "ro.board.platform": "kona", "ro.hardware": "qcom",
        "ro.build.version.release": "12", "ro.build.version.sdk": "31",
        "ro.build.type": "user", "ro.product.cpu.abi": "arm64-v8a",
        "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
        "ro.build.fingerprint":
            "OnePlus/OnePlus8Pro_EEA/OnePlus8Pro:12/RKQ1.211119.001/Q.1a2b3c4-5d6e:user/release-keys",
        "ro.serialno": "5f1e2d3c", "ro.debuggable": "0", "sys.boot_completed": "1",
    }
    zones = [("aoss0-usr", 33_900), ("cpu-0-0-usr", 36_100), ("cpu-1-0-usr", 41_300),
             ("cpu-1-6-usr", 42_000), ("gpuss-0-usr", 35_200), ("skin-therm", 31_000)]
    return Profile(props=props, cpus=little + big + prime, thermal=zones)


def _cpu_list(cpus: list[int]) -> str:
    return f"{cpus[0]}-{cpus[-1]}" if len(cpus) > 1 else str(cpus[0])


class Sandbox:
    """A device filesystem under ``state_dir/root`` plus host-side state (props, logs)."""

    def __init__(self, state_dir: Path, profile: Profile) -> None:
        self.state_dir = Path(state_dir)
        self.root = self.state_dir / "root"
        self.profile = profile
        self.props_file = self.state_dir / "props"
        self.taskset_log = self.state_dir / "taskset.log"
        self.exec_hook: Path | None = None
        self._root_str = str(self.root)
        self._prefix_re = re.compile(
            r"(?<![\w.~/$-])/(?=(?:" + "|".join(DEVICE_TOP_DIRS) + r")(?:/|\b|$))")
        self._build()

    # -- layout --------------------------------------------------------------------------
    def _build(self) -> None:
        for d in ("data/local/tmp", "sdcard", "system/bin", "vendor/bin", "proc"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        shims = sorted((HERE / "adbtd_shims").iterdir())
        if self.profile.rooted:
            shims += sorted((HERE / "adbtd_root_shims").iterdir())
        for shim in shims:
            target = self.root / "system/bin" / shim.name
            shutil.copyfile(shim, target)
            target.chmod(0o755)
        # ARM64 programs run under qemu with -L <root>: qemu resolves the guest's absolute paths
        # under the root first, so they see /data/local/tmp, the fake /sys and /proc/cpuinfo as
        # on the phone, and the cross sysroot's loader and libc through root/lib.
        if Path(QEMU_LD_PREFIX, "lib").is_dir():
            os.symlink(Path(QEMU_LD_PREFIX, "lib"), self.root / "lib")
        self.taskset_log.touch()
        self.write_props()
        self._write_sysfs()
        self.exec_hook = build_exec_hook()

    def write_props(self) -> None:
        self.props_file.write_text("".join(f"{k}={v}\n" for k, v in self.profile.props.items()))

    def _write_sysfs(self) -> None:
        p = self.profile
        n = len(p.cpus)
        cpu_dir = "/sys/devices/system/cpu"
        for name in ("online", "possible", "present"):
            self.write_file(f"{cpu_dir}/{name}", _cpu_list(list(range(n))) + "\n")
        for policy in sorted({c.policy for c in p.cpus}):
            members = [i for i, c in enumerate(p.cpus) if c.policy == policy]
            self._write_policy(f"{cpu_dir}/cpufreq/policy{policy}", p.cpus[policy], members)
        for i, cpu in enumerate(p.cpus):
            base = f"{cpu_dir}/cpu{i}"
            self.write_file(f"{base}/cpu_capacity", f"{cpu.capacity}\n")
            self.write_file(f"{base}/topology/cluster_id", f"{cpu.cluster}\n")
            self.write_file(f"{base}/topology/physical_package_id", "0\n")
            self.write_file(f"{base}/topology/core_id", f"{i - cpu.policy}\n")
            os.symlink(f"../cpufreq/policy{cpu.policy}", self.host_path(f"{base}/cpufreq"))
        for z, (kind, milli) in enumerate(p.thermal):
            self.write_file(f"/sys/class/thermal/thermal_zone{z}/type", kind + "\n")
            self.write_file(f"/sys/class/thermal/thermal_zone{z}/temp", f"{milli}\n")
        self.write_file("/sys/class/power_supply/battery/temp", f"{p.battery_decidegrees}\n")
        self.write_file("/proc/loadavg", p.loadavg + "\n")
        self.write_file("/proc/cpuinfo", self._cpuinfo())
        self.write_file("/proc/version", f"Linux version {p.kernel_release} (build@android)\n")

    def _write_policy(self, base: str, cpu: Cpu, members: list[int]) -> None:
        related = " ".join(map(str, members)) + "\n"
        files = {"cpuinfo_max_freq": cpu.max_khz, "cpuinfo_min_freq": cpu.min_khz,
                 "scaling_max_freq": cpu.max_khz, "scaling_min_freq": cpu.min_khz,
                 "scaling_cur_freq": cpu.max_khz * 2 // 3, "scaling_governor": cpu.governor,
                 "scaling_available_governors": "performance powersave schedutil",
                 "related_cpus": related.strip(), "affected_cpus": related.strip()}
        for name, value in files.items():
            self.write_file(f"{base}/{name}", f"{value}\n")

    def _cpuinfo(self) -> str:
        blocks = []
        for i, cpu in enumerate(self.profile.cpus):
            blocks.append(
                f"processor\t: {i}\nBogoMIPS\t: 38.40\n"
                "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp "
                "cpuid asimdrdm lrcpc dcpop asimddp\n"
                f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: {cpu.variant}\n"
                f"CPU part\t: {cpu.part}\nCPU revision\t: 0\n")
        return "\n".join(blocks) + f"\nHardware\t: {self.profile.hardware}\n"

    # -- paths ---------------------------------------------------------------------------
    def host_path(self, device_path: str) -> Path:
        """Any absolute device path -> a path inside the sandbox root."""
        clean = posixpath.normpath("/" + device_path.lstrip("/"))   # '..' stops at '/'
        return self.root / clean.lstrip("/") if clean != "/" else self.root

    def device_path(self, host_path: str | Path) -> str:
        text = str(host_path)
        return text[len(self._root_str):] or "/" if text.startswith(self._root_str) else text

    def write_file(self, device_path: str, content: str | bytes) -> Path:
        path = self.host_path(device_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def rewrite_command(self, command: str) -> str:
        """Device paths in command text -> sandbox paths (see module docstring)."""
        return self._prefix_re.sub(lambda m: self._root_str + "/", command)

    def unmapper(self) -> OutputUnmapper:
        return OutputUnmapper(self._root_str.encode())

    # -- processes -----------------------------------------------------------------------
    def environment(self, df_avail_kb: int) -> dict[str, str]:
        p = self.profile
        env = {
            "PATH": f"{self.root}/system/bin:{self.root}/vendor/bin:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.root), "TMPDIR": f"{self.root}/data/local/tmp",
            "ANDROID_DATA": f"{self.root}/data", "EXTERNAL_STORAGE": f"{self.root}/sdcard",
            "ANDROID_ROOT": f"{self.root}/system", "TERM": "dumb", "LANG": "C.UTF-8",
            "SFD_PROPS": str(self.props_file), "SFD_TASKSET_LOG": str(self.taskset_log),
            "SFD_CPU_MASK": format((1 << len(p.cpus)) - 1, "x"),
            "SFD_KERNEL_RELEASE": p.kernel_release, "SFD_DF_TOTAL_KB": str(p.df_total_kb),
            "SFD_DF_AVAIL_KB": str(df_avail_kb),
            "SFD_QEMU": QEMU, "SFD_QEMU_LD_PREFIX": self._root_str,
        }
        if self.exec_hook:
            env["LD_PRELOAD"] = str(self.exec_hook)
        return env

    def spawn(self, command: str, df_avail_kb: int, merge_stderr: bool) -> subprocess.Popen:
        """Start ``/bin/sh -c`` for a device command, in its own process group."""
        return subprocess.Popen(
            ["/bin/sh", "-c", self.rewrite_command(command)], cwd=self.root,
            env=self.environment(df_avail_kb), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            start_new_session=True)

    def taskset_calls(self) -> list[str]:
        """What taskset was asked to do, one ``MASK COMMAND...`` line per call."""
        text = self.taskset_log.read_text()
        unmap = self.unmapper()
        return [(unmap.feed(line.encode()) + unmap.flush()).decode() for line in text.splitlines()]


class OutputUnmapper:
    """Streaming reverse of the prefix rewrite: ``<root>/x`` -> ``/x`` and a bare ``<root>``
    -> ``/``, also when an occurrence is split across two reads."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.pattern = re.compile(re.escape(marker) + b"(/)?")
        self.pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self.pending + chunk
        keep = 0       # hold back a tail that may be (the start of) a marker
        for size in range(min(len(self.marker), len(data)), 0, -1):
            if self.marker.startswith(data[-size:]):
                keep = size
                break
        self.pending = data[len(data) - keep:]
        return self._unmap(data[:len(data) - keep])

    def flush(self) -> bytes:
        data, self.pending = self.pending, b""
        return self._unmap(data)

    def _unmap(self, data: bytes) -> bytes:
        return self.pattern.sub(b"/", data)


def build_exec_hook() -> Path | None:
    """Compile the LD_PRELOAD hook once per source version; None without a C compiler."""
    source = HERE / "adbtd_exec_hook.c"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / "seaformer-adb-testdevice"
    target = cache / f"exec_hook-{digest}.so"
    if target.exists():
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f".exec_hook-{digest}-{os.getpid()}.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(partial), str(source), "-ldl"],
                   check=True, capture_output=True)
    os.replace(partial, target)      # atomic: concurrent test processes may race here
    return target


def elf_exec_supported() -> bool:
    return Path(QEMU).exists() and Path(QEMU_LD_PREFIX).is_dir() and build_exec_hook() is not None
