"""Self-contained runner folders: the program, every library it loads, and how to start it.

A stock Android phone has bionic and ``/system/bin/linker64``, not glibc: a glibc program's ELF
interpreter (``/lib/ld-linux-aarch64.so.1``) does not exist there, so the kernel refuses it
with ENOENT. Without an NDK we still get a program a phone starts by shipping glibc with it:
the folder holds glibc's dynamic loader, which is itself a static ELF the kernel runs as it
is, and the loader starts the runner with an explicit library path:

    lib/ld-linux-aarch64.so.1 --library-path lib --inhibit-cache seaformer-runner PLAN RESULT

``--inhibit-cache`` keeps the loader away from ``/etc/ld.so.cache`` (a phone has none; a Linux
board's would point at its own libraries). We chose this over a static link because the
ExecuTorch wheels ship shared libraries only, and over an NDK build because no NDK is needed.

Every folder has ``runner.json``: the target, the ABI it runs on, the launch mode
(``bundled-loader`` or ``direct``), the program, the loader, the library folders and the
sha256 of every file, so a folder copied alone to a device runs, and a prebuilt folder can be
checked before it is trusted (``load``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..export.manifest import sha256_path as sha256_file

DESCRIPTION = "runner.json"
LAUNCHES = ("bundled-loader", "direct")
# ELF e_machine of each device ABI (readelf's "Machine:" text).
ABI_MACHINES = {"arm64-v8a": "AArch64", "x86_64": "Advanced Micro Devices X86-64"}


@dataclass(frozen=True)
class Launch:
    """How a runner folder starts on a device, as paths relative to the folder."""

    mode: str                          # bundled-loader | direct
    program: str
    loader: str | None = None          # bundled-loader: glibc's ld.so inside the folder
    library_dirs: tuple[str, ...] = ()

    def argv(self, where: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """The command line and environment, given where each relative file is on the device
        (files may sit in different folders there: the device stores them by content)."""
        libs = sorted({where[name].rsplit("/", 1)[0] for name in where
                       if _in_dirs(name, self.library_dirs)})
        if self.mode == "bundled-loader":
            return [where[self.loader], "--library-path", ":".join(libs), "--inhibit-cache",
                    where[self.program]], {}
        return [where[self.program]], ({"LD_LIBRARY_PATH": ":".join(libs)} if libs else {})


def _in_dirs(name: str, dirs: tuple[str, ...]) -> bool:
    return any(name.startswith(d.rstrip("/") + "/") for d in dirs)


# -- reading ELF headers (binutils' readelf reads any architecture's ELF) --------------------

def _readelf(flag: str, path: Path) -> str:
    proc = subprocess.run(["readelf", flag, str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"readelf could not read {path}: {proc.stderr.strip()}")
    return proc.stdout


def elf_needed(path: Path) -> list[str]:
    """DT_NEEDED entries: the shared libraries ``path`` asks for by name."""
    return [line.split("[", 1)[1].rstrip("]") for line in _readelf("-d", path).splitlines()
            if "(NEEDED)" in line]


def elf_interpreter(path: Path) -> str | None:
    """PT_INTERP: the loader the kernel starts for ``path`` (None for a static ELF)."""
    for line in _readelf("-l", path).splitlines():
        if "Requesting program interpreter:" in line:
            return line.split(":", 1)[1].strip().rstrip("]")
    return None


def elf_machine(path: Path) -> str:
    for line in _readelf("-h", path).splitlines():
        if line.strip().startswith("Machine:"):
            return line.split(":", 1)[1].strip()
    raise UserError(f"{path} has no ELF machine field; is it an ELF file?")


def closure(program: Path, search: list[Path], strict: bool = True) -> dict[str, Path]:
    """Every library ``program`` loads, transitively, found in the ``search`` folders in order
    (name -> file). A library none of them holds is an error naming it and who needs it, or,
    when not ``strict``, one the device provides (its libc, for a direct launch)."""
    found: dict[str, Path] = {}
    pending = [program]
    while pending:
        current = pending.pop()
        for name in elf_needed(current):
            if name in found:
                continue
            path = next((d / name for d in search if (d / name).is_file()), None)
            if path is None and not strict:
                continue
            if path is None:
                raise UserError(f"{current.name} needs {name}, which none of "
                                f"{', '.join(map(str, search))} holds; install the package "
                                f"that provides it (for aarch64: libc6-arm64-cross and "
                                f"libstdc++6-arm64-cross).")
            found[name] = path
            pending.append(path)
    return found


# -- writing and reading folders ----------------------------------------------------------

def write(folder: Path, *, target: str, abi: str, launch: Launch, files: dict[str, Path],
          extra: dict) -> dict:
    """Copy ``files`` (relative name -> source) into ``folder`` (resolving symlinks) and write
    its ``runner.json``; returns the description."""
    for name, source in files.items():
        dest = folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        os.chmod(dest, 0o755 if name in (launch.program, launch.loader) else 0o644)
    description = {
        "schema": 1, "target": target, "abi": abi, "launch": launch.mode,
        "program": launch.program, "loader": launch.loader,
        "library_dirs": list(launch.library_dirs),
        "files": {name: sha256_file(folder / name) for name in sorted(files)},
        # From inside the folder; "./" because the loader reads a bare name as a library.
        "command": " ".join(launch.argv({n: f"./{n}" for n in files})[0]) + " PLAN RESULT",
        **extra}
    (folder / DESCRIPTION).write_text(json.dumps(description, indent=2) + "\n")
    return description


def load(folder: Path) -> tuple[dict, Launch]:
    """A runner folder's description, after checking that every file it lists is there with
    the hash it lists (a prebuilt folder is not trusted on its word)."""
    folder = Path(folder)
    path = folder / DESCRIPTION
    try:
        description = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{folder} is not a runner folder: cannot read {DESCRIPTION} ({exc}). "
                        f"Pass the folder `seaformer-deploy runner build` printed.") from None
    required = ("target", "abi", "launch", "program", "files")
    if missing := [k for k in required if k not in description]:
        raise UserError(f"{path} lacks {', '.join(missing)}; rebuild the runner with "
                        f"`seaformer-deploy runner build`.")
    if description["launch"] not in LAUNCHES:
        raise UserError(f"{path}: launch {description['launch']!r} is not one of "
                        f"{', '.join(LAUNCHES)}.")
    for name, digest in description["files"].items():
        file = folder / name
        if not file.is_file() or sha256_file(file) != digest:
            raise UserError(f"{folder}: {name} is missing or differs from the sha256 in "
                            f"{DESCRIPTION}; rebuild the runner (`seaformer-deploy runner "
                            f"build --force`).")
    launch = Launch(description["launch"], description["program"], description.get("loader"),
                    tuple(description.get("library_dirs", ())))
    return description, launch
