"""The test device's LD_PRELOAD libraries, compiled on first use and cached.

* ``adbtd_exec_hook.c`` (host ``cc``): loaded into the device shell and its tools; execve as
  the phone's kernel would do it (see that file).
* ``adbtd_shell_compat.c`` (host ``cc``): loaded with it; Android's user and group names
  (shell is 2000, as bionic has them) and mksh's messages as Android's mksh prints them.
* ``adbtd_affinity.c``: loaded into device programs; the phone's CPU numbering on the host's
  CPUs. Built for aarch64 guests (``aarch64-linux-gnu-gcc``, passed through qemu) and for
  x86-64 device programs of the emulator profile (host ``cc``).
* ``adbtd_paths.c`` (host ``cc``): loaded into native device programs (the emulator profile);
  their absolute paths name sandbox files, as qemu -L gives aarch64 programs.

The cache (``$TMPDIR/seaformer-adb-testdevice``, one file per source digest and compiler) is
world-readable: the device shell runs as uid 2000 when the tests run as root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
QEMU = "/usr/bin/qemu-aarch64-static"
CROSS_GLIBC = "/usr/aarch64-linux-gnu/lib"      # libc6-arm64-cross: what tests bundle
HOST_ARCH = os.uname().machine


def cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "seaformer-adb-testdevice"


def _compiler(arch: str) -> str | None:
    """The host's C compiler for the host's architecture, Debian's cross gcc for others."""
    names = ("cc", "gcc") if arch == HOST_ARCH else (f"{arch}-linux-gnu-gcc",)
    return next((found for name in names if (found := shutil.which(name))), None)


def build(source_name: str, arch: str) -> Path | None:
    """``source_name`` compiled as a shared library for ``arch``, once per source version;
    None without a compiler for it."""
    compiler = _compiler(arch)
    if compiler is None:
        return None
    source = HERE / source_name
    digest = hashlib.sha256(source.read_bytes() + compiler.encode()).hexdigest()[:16]
    stem = source_name.removeprefix("adbtd_").removesuffix(".c")
    cache = cache_dir()
    target = cache / f"{stem}-{arch}-{digest}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o755)                 # the device shell may be uid 2000
    partial = cache / f".{target.name}-{os.getpid()}"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(partial), str(source),
                    "-ldl"], check=True, capture_output=True)
    partial.chmod(0o755)
    os.replace(partial, target)        # atomic: concurrent test processes may race here
    return target


def build_exec_hook() -> Path | None:
    """The execve hook for the host shell (None without a host C compiler)."""
    return build("adbtd_exec_hook.c", HOST_ARCH)


def build_shell_compat() -> Path | None:
    """Android's user names and mksh messages for the host shell and tools."""
    return build("adbtd_shell_compat.c", HOST_ARCH)


def build_device_preloads(arch: str) -> list[Path]:
    """What device programs of ``arch`` preload: the affinity translation, and for native
    ones (no qemu to map paths) the device paths. Empty without a compiler for ``arch``."""
    sources = ["adbtd_affinity.c"] + (["adbtd_paths.c"] if arch == HOST_ARCH else [])
    built = [build(source, arch) for source in sources]
    return [path for path in built if path is not None]


def elf_exec_supported() -> bool:
    """The device can run aarch64 programs (qemu-user, the exec hook) and tests can bundle
    glibc with them (Debian's cross glibc)."""
    return (Path(QEMU).exists() and Path(CROSS_GLIBC, "ld-linux-aarch64.so.1").exists()
            and build_exec_hook() is not None)
