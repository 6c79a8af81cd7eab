"""This machine as a bench device: the embedded default every checkout can run."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from .base import CommandResult, Device


class LocalDevice(Device):
    kind = "local"
    name = "local"
    transport = "local process"
    formats = ("pte", "onnx")
    runner_target = "host"

    def __init__(self, sysfs_root: Path | None = None) -> None:
        # A fake sysfs/procfs tree for tests; None reads the real one.
        self.sysfs_root = sysfs_root
        self._workdir: str | None = None

    def shell(self, script: str, timeout: float | None = 60) -> CommandResult:
        env = dict(os.environ)
        if self.sysfs_root is not None:
            env["SFD_ROOT"] = str(self.sysfs_root)
        proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env,
                              timeout=timeout)
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)

    def stage(self, files: list[Path]) -> dict[Path, str]:
        return {f: str(Path(f).resolve()) for f in files}

    def run(self, argv: list[str], timeout: float | None, cwd: str | None = None
            ) -> CommandResult:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd)
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
