"""``--lock-freq``: hold the pinned core's cluster at its top frequency (rooted devices only).

With the default governor (schedutil) a core's frequency follows its recent load, so the first
iterations after an idle pause run slower and results depend on what ran before. Locking sets
the cluster's governor to ``performance`` and its minimum and maximum to ``cpuinfo_max_freq``.
It needs root: ``adb root`` (the shell is uid 0) or an ``su`` binary (Magisk, userdebug builds).
We never call ``su`` unless the user asked for the lock. The saved settings are written back in
reverse order by ``restore``, which the bench calls on every exit path.
"""

from __future__ import annotations

import shlex

from ..errors import UserError, option
from .base import Device


class FrequencyLockError(UserError):
    pass


def root_prefix(device: Device) -> str:
    """How to run a command as root on ``device``: '' when the shell already is root, else
    ``su 0 sh -c`` (the syntax both AOSP's su and Magisk accept)."""
    if device.shell("id -u").stdout.strip() == "0":
        return ""
    probe = device.shell("command -v su >/dev/null && su 0 sh -c 'echo rooted' 2>/dev/null")
    if probe.stdout.strip() == "rooted":
        return "su 0 sh -c"
    raise FrequencyLockError(
        f"{option('lock_freq')} needs root on {device.name} (`adb root` on a userdebug build, "
        f"or su from Magisk); this device has neither. Run without {option('lock_freq')}: the "
        f"report still records the governor and frequencies before and after every block.")


class FrequencyLock:
    def __init__(self, device: Device, core: int) -> None:
        self.device = device
        self.core = core
        self.base = f"/sys/devices/system/cpu/cpu{core}/cpufreq"
        self.saved: dict[str, str] = {}
        self.prefix = ""

    def _as_root(self, script: str):
        command = f"{self.prefix} {shlex.quote(script)}" if self.prefix else script
        return self.device.shell(command)

    def _read(self, name: str) -> str:
        value = self.device.shell(f"cat {self.base}/{name}").stdout.strip()
        if not value:
            raise FrequencyLockError(f"{self.device.name}: cannot read {self.base}/{name}; "
                                     f"this kernel does not expose cpufreq for cpu{self.core}.")
        return value

    def apply(self) -> dict:
        """Lock, verify, and say what was set (for the report)."""
        self.prefix = root_prefix(self.device)
        top = self._read("cpuinfo_max_freq")
        self.saved = {name: self._read(name) for name in
                      ("scaling_governor", "scaling_max_freq", "scaling_min_freq")}
        # max before min: min may not exceed the current max.
        self._write([("scaling_governor", "performance"), ("scaling_max_freq", top),
                     ("scaling_min_freq", top)])
        got = {name: self._read(name) for name in
               ("scaling_governor", "scaling_min_freq", "scaling_max_freq")}
        if got != {"scaling_governor": "performance", "scaling_min_freq": top,
                   "scaling_max_freq": top}:
            self.restore()
            raise FrequencyLockError(f"{self.device.name}: the kernel did not accept the lock "
                                     f"on cpu{self.core} (read back {got}).")
        return {"core": self.core, "khz": int(top), "governor": "performance",
                "saved": dict(self.saved), "via": self.prefix or "root shell"}

    def restore(self) -> None:
        if not self.saved:
            return
        saved, self.saved = self.saved, {}
        # min first (it must not exceed the max we restore next), then max, then the governor.
        self._write([("scaling_min_freq", saved["scaling_min_freq"]),
                     ("scaling_max_freq", saved["scaling_max_freq"]),
                     ("scaling_governor", saved["scaling_governor"])])

    def _write(self, values: list[tuple[str, str]]) -> None:
        script = " && ".join(f"echo {shlex.quote(v)} > {self.base}/{name}"
                             for name, v in values)
        done = self._as_root(script)
        if done.returncode != 0:
            raise FrequencyLockError(f"{self.device.name}: writing cpufreq settings of "
                                     f"cpu{self.core} failed: {done.stderr.strip()}")
