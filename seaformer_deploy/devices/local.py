"""This machine as a bench device: the embedded default every checkout can run."""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import UserError, option
from .base import CommandResult, Device


class LocalDevice(Device):
    kind = "local"
    name = "local"
    transport = "local process"

    def __init__(self, sysfs_root: Path | None = None) -> None:
        # A fake sysfs/procfs tree for tests; None reads the real one.
        self.sysfs_root = sysfs_root
        self._workdir: str | None = None

    def shell(self, script: str, timeout: float | None = 60) -> CommandResult:
        env = dict(os.environ)
        if self.sysfs_root is not None:
            env["SFD_ROOT"] = str(self.sysfs_root)
        # errors="replace": a runner may print bytes that are not UTF-8 (a corrupted .pte's
        # name or header); that must not crash the bench.
        proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                              errors="replace", env=env,
                              timeout=timeout)
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)

    def stage(self, files: list[Path]) -> dict[Path, str]:
        return {f: str(Path(f).resolve()) for f in files}

    def run(self, argv: list[str], timeout: float | None, cwd: str | None = None,
            env: dict[str, str] | None = None) -> CommandResult:
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                              timeout=timeout, cwd=cwd,
                              env={**os.environ, **env} if env else None)
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)

    def fetch(self, device_path: str, local: Path) -> None:
        if Path(device_path).resolve() != Path(local).resolve():
            shutil.copyfile(device_path, local)

    def workdir(self) -> str:
        if self._workdir is None:
            self._workdir = tempfile.mkdtemp(prefix="seaformer-bench-")
        return self._workdir

    def write_text(self, device_path: str, text: str) -> None:
        Path(device_path).write_text(text)

    def read_text(self, device_path: str) -> str:
        return Path(device_path).read_text()

    def cleanup(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def acquire_lock(self, wait: float = 0.0) -> None:
        """An flock on a per-user file: two local benches would share (and disturb) the cores.
        The kernel drops the lock when the process dies, so it is never stale."""
        path = Path(tempfile.gettempdir()) / f"seaformer-deploy-bench-{os.getuid()}.lock"
        handle = open(path, "a+")
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise UserError(f"another seaformer-deploy bench runs on this machine "
                                    f"(it holds {path}); wait for it, or pass "
                                    f"{option('wait_seconds')} SECONDS."
                                    ) from None
                time.sleep(0.5)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid={os.getpid()}\n")
        handle.flush()
        self._lock = handle

    def release_lock(self) -> None:
        if getattr(self, "_lock", None) is not None:
            self._lock.close()          # closing the descriptor releases the flock
            self._lock = None

    def properties(self) -> dict[str, str]:
        return {"os": f"{platform.system()} {platform.release()}", "machine": platform.machine(),
                "model": _dmi_product(), "hostname": platform.node(),
                "python": platform.python_version()}


def _dmi_product() -> str:
    """The machine's vendor and product name (the host's analogue of a phone model), if exposed."""
    parts = []
    for name in ("sys_vendor", "product_name"):
        try:
            parts.append(Path(f"/sys/class/dmi/id/{name}").read_text().strip())
        except OSError:
            pass
    return " ".join(p for p in parts if p) or "unknown"
