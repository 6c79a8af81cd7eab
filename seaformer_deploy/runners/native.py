"""Building the native runner (``native/runner.cpp``) with CMake, once per target and source.

Targets:
  host           this machine, against the ExecuTorch wheel pip installed.
  linux-arm64    Debian's aarch64 cross compiler (``g++-aarch64-linux-gnu``) against the aarch64
                 ExecuTorch wheel of the same version, fetched once with ``pip download
                 --platform manylinux_2_28_aarch64`` and unpacked into the cache.
  android-arm64  the Android NDK's CMake toolchain (``--ndk``) against an ExecuTorch install
                 prefix built for Android (``--executorch-prefix``; see the README).

Builds are cached under ``$XDG_CACHE_HOME/seaformer-deploy/runner/<target>-<digest>``, where the
digest covers the sources, the target, the ExecuTorch version and prefix, and the compiler, so a
changed input rebuilds and an unchanged one returns at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..errors import UserError

TARGETS = ("host", "linux-arm64", "android-arm64")
SOURCE_DIR = Path(__file__).with_name("native")
BINARY = "seaformer-runner"
CROSS_CXX = "aarch64-linux-gnu-g++"
AARCH64_PLATFORM = "manylinux_2_28_aarch64"


@dataclass(frozen=True)
class RunnerBuild:
    target: str
    binary: Path
    libraries: tuple[Path, ...]      # shared libraries the binary needs next to it on a device
    digest: str
    executorch_version: str


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "seaformer-deploy"


def executorch_version() -> str:
    return metadata.version("executorch")


def host_prefix() -> Path:
    import executorch

    return Path(list(executorch.__path__)[0])


def build_runner(target: str = "host", ndk: Path | None = None,
                 executorch_prefix: Path | None = None, force: bool = False,
                 log: callable = lambda line: None) -> RunnerBuild:
    """Build (or reuse) the runner for ``target``."""
    if target not in TARGETS:
        raise UserError(f"unknown runner target {target!r}; expected one of {', '.join(TARGETS)}")
    prefix, cmake_args, compiler = _configure_inputs(target, ndk, executorch_prefix, log)
    digest = _digest(target, prefix, compiler, cmake_args)
    out = cache_root() / "runner" / f"{target}-{digest[:16]}"
    binary = out / BINARY
    if binary.is_file() and not force:
        return _described(target, binary, prefix, digest)
    build_dir = out.with_name(out.name + ".build")
    shutil.rmtree(build_dir, ignore_errors=True)
    _cmake(["-S", str(SOURCE_DIR), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
            f"-DCMAKE_PREFIX_PATH={prefix}", *cmake_args], log)
    _cmake(["--build", str(build_dir), "-j", str(os.cpu_count() or 1)], log)
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copy2(build_dir / BINARY, staging / BINARY)
    (staging / "build.json").write_text(json.dumps({"target": target, "digest": digest,
                                                    "prefix": str(prefix)}))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)
    shutil.rmtree(build_dir, ignore_errors=True)
    for stale in out.parent.glob(f"{target}-*"):      # older builds of this target
        if stale != out:
            shutil.rmtree(stale, ignore_errors=True)
    return _described(target, binary, prefix, digest)


def _configure_inputs(target: str, ndk: Path | None, prefix: Path | None,
                      log: callable) -> tuple[Path, list[str], str]:
    for tool in ("cmake",):
        if shutil.which(tool) is None:
            raise UserError(f"{tool} is not installed; the native runner is built with CMake.")
    if target == "host":
        return host_prefix(), [], _compiler_id("c++")
    if target == "linux-arm64":
        if shutil.which(CROSS_CXX) is None:
            raise UserError(f"{CROSS_CXX} is not installed: on Debian/Ubuntu, "
                            f"`apt-get install g++-aarch64-linux-gnu`.")
        prefix = prefix or aarch64_executorch(log)
        args = ["-DCMAKE_SYSTEM_NAME=Linux", "-DCMAKE_SYSTEM_PROCESSOR=aarch64",
                f"-DCMAKE_CXX_COMPILER={CROSS_CXX}",
                "-DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE=BOTH"]
        return prefix, args, _compiler_id(CROSS_CXX)
    if ndk is None or prefix is None:
        raise UserError("the android-arm64 runner needs --ndk PATH (an Android NDK) and "
                        "--executorch-prefix PATH (ExecuTorch built and installed for "
                        "arm64-v8a); see the README's 'Real phones' section.")
    toolchain = Path(ndk) / "build" / "cmake" / "android.toolchain.cmake"
    if not toolchain.is_file():
        raise UserError(f"{ndk} is not an Android NDK: {toolchain} is missing.")
    args = [f"-DCMAKE_TOOLCHAIN_FILE={toolchain}", "-DANDROID_ABI=arm64-v8a",
            "-DANDROID_PLATFORM=android-28", "-DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE=BOTH"]
    return Path(prefix), args, f"ndk:{Path(ndk).name}"


def aarch64_executorch(log: callable) -> Path:
    """The aarch64 ExecuTorch wheel of our version, unpacked once into the cache."""
    version = executorch_version().split("+")[0]
    root = cache_root() / "wheels" / f"executorch-{version}-aarch64"
    package = root / "executorch"
    if (package / "share" / "cmake" / "executorch-config.cmake").is_file():
        return package
    download = root.with_name(root.name + ".download")
    shutil.rmtree(download, ignore_errors=True)
    log(f"fetching the aarch64 ExecuTorch {version} wheel")
    cmd = [sys.executable, "-m", "pip", "download", f"executorch=={version}", "--no-deps",
           "--only-binary=:all:", "--platform", AARCH64_PLATFORM, "--python-version",
           f"{sys.version_info.major}.{sys.version_info.minor}", "-d", str(download)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(download.glob("executorch-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise UserError(f"could not fetch the aarch64 ExecuTorch wheel ({' '.join(cmd)}):\n"
                        f"{proc.stderr.strip()[-800:]}")
    staging = root.with_name(root.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(wheels[0]) as wheel:
        members = [n for n in wheel.namelist()
                   if n.startswith(("executorch/lib/", "executorch/include/",
                                    "executorch/share/"))]
        wheel.extractall(staging, members)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(staging, root)
    shutil.rmtree(download, ignore_errors=True)
    return package


def _compiler_id(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True,
                              check=True).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError) as exc:
        raise UserError(f"no working C++ compiler ({cxx}): {exc}") from None


def _digest(target: str, prefix: Path, compiler: str, cmake_args: list[str]) -> str:
    h = hashlib.sha256()
    for path in sorted(SOURCE_DIR.iterdir()):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    for part in (target, str(prefix), compiler, executorch_version(), *cmake_args):
        h.update(part.encode())
    return h.hexdigest()


def _cmake(args: list[str], log: callable) -> None:
    proc = subprocess.run(["cmake", *args], capture_output=True, text=True)
    for line in proc.stdout.splitlines()[-3:]:
        log(line)
    if proc.returncode != 0:
        raise UserError(f"building the native runner failed (cmake {' '.join(args[:2])}):\n"
                        f"{(proc.stdout + proc.stderr).strip()[-2000:]}")


def _described(target: str, binary: Path, prefix: Path, digest: str) -> RunnerBuild:
    return RunnerBuild(target, binary, tuple(needed_libraries(binary, prefix / "lib")), digest,
                       executorch_version())


def needed_libraries(binary: Path, lib_dir: Path) -> list[Path]:
    """The ExecuTorch shared libraries ``binary`` loads, transitively (read from ELF headers)."""
    found: dict[str, Path] = {}
    pending = [binary]
    while pending:
        for name in _elf_needed(pending.pop()):
            candidate = lib_dir / name
            if name not in found and candidate.is_file():
                found[name] = candidate
                pending.append(candidate)
    return sorted(found.values())


def _elf_needed(path: Path) -> list[str]:
    """DT_NEEDED entries, via binutils' readelf (which reads any architecture's ELF)."""
    proc = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"readelf could not read {path}: {proc.stderr.strip()}")
    return [line.split("[", 1)[1].rstrip("]") for line in proc.stdout.splitlines()
            if "(NEEDED)" in line]
