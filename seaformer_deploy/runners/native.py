"""Building the native runner (``native/runner.cpp``) with CMake, once per target and source.

Targets (each yields a folder with ``runner.json``, see ``bundle.py``):
  host            this machine, against the ExecuTorch wheel pip installed; runs in place.
  linux-arm64     Debian's aarch64 cross compiler (``g++-aarch64-linux-gnu``) against the aarch64
                  ExecuTorch wheel of the same version (fetched once with ``pip download
                  --platform manylinux_2_28_aarch64``); needs glibc on the device (Linux boards).
  android-arm64   any arm64-v8a phone, no NDK: the linux-arm64 program bundled with its whole
                  runtime (ExecuTorch libraries, glibc's loader, libc, libm, libstdc++, libgcc_s
                  from Debian's arm64 cross packages), started through the bundled loader.
                  With ``ndk`` and ``executorch_prefix``: the NDK's CMake toolchain against
                  ExecuTorch built for Android (bionic, started directly).
  android-x86_64  Android emulator images: the host program bundled the same way.

The sources ship inside the package (package data of the wheel). Builds are cached under
``$XDG_CACHE_HOME/seaformer-deploy/runner/<target>-<digest>``, where the digest covers the
sources' names and contents (not where the package is installed), the target, the ExecuTorch
version and prefix (the host program's RPATH names it), the compiler and, for bundles, the
bundled glibc, so a changed input rebuilds and an unchanged one returns at once. Builds run
one at a time per cache (a file lock); another digest's folder of the same target is dropped
only after STALE_DAYS unused, since another environment sharing the cache may be running it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..errors import OptionError, UserError, option
from ..paths import cache_root, unused_for_long
from . import bundle
from .bundle import Launch

TARGETS = ("host", "linux-arm64", "android-arm64", "android-x86_64")
SOURCE_DIR = Path(__file__).with_name("native")
BINARY = "seaformer-runner"
CROSS_CXX = "aarch64-linux-gnu-g++"
AARCH64_PLATFORM = "manylinux_2_28_aarch64"
AARCH64_SYSROOT = Path("/usr/aarch64-linux-gnu/lib")      # libc6-arm64-cross, libstdc++6-...
HOST_LIB_DIRS = [Path(p) for p in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                                   "/lib64", "/usr/lib64", "/lib", "/usr/lib")]
# Where each bundle's program is built, and the folders its libraries come from.
BUNDLED = {"android-arm64": "linux-arm64", "android-x86_64": "host"}


def host_abi() -> str:
    return {"x86_64": "x86_64", "aarch64": "arm64-v8a", "arm64": "arm64-v8a"}.get(
        platform.machine(), platform.machine())


def target_abi(target: str) -> str:
    """The Android ABI name of the CPU a target's program runs on."""
    return host_abi() if target == "host" else (
        "x86_64" if target == "android-x86_64" else "arm64-v8a")


@dataclass(frozen=True)
class RunnerBuild:
    target: str
    folder: Path
    binary: Path
    files: dict[str, Path]           # relative name -> local file: everything a device needs
    launch: Launch
    digest: str
    executorch_version: str
    abi: str
    toolchain: str                   # glibc (bundled) | glibc | bionic (NDK)

    @property
    def libraries(self) -> tuple[Path, ...]:
        return tuple(p for name, p in sorted(self.files.items()) if name != self.launch.program)

    def identity(self) -> dict:
        """What a report records: the build, the launch mode and every file's hash."""
        return {"runner": "seaformer-native-runner", "target": self.target, "abi": self.abi,
                "toolchain": self.toolchain, "launch": self.launch.mode,
                "runtime": "executorch", "runtime_version": self.executorch_version,
                "build_digest": self.digest, "folder": str(self.folder),
                "binary_sha256": bundle.sha256_file(self.binary),
                "files": {name: bundle.sha256_file(path)
                          for name, path in sorted(self.files.items())},
                "libraries": sorted(Path(n).name for n in self.files if n != self.launch.program)}


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
    if (ndk is None) != (executorch_prefix is None) and target == "android-arm64":
        raise OptionError(f"the NDK build of the android-arm64 runner needs both "
                          f"{option('ndk')} PATH (an Android NDK) and "
                          f"{option('executorch_prefix')} PATH (ExecuTorch built and installed "
                          f"for arm64-v8a); without either, the runner is bundled with glibc "
                          f"and needs no NDK.")
    if target != "android-arm64" and (ndk is not None or (
            executorch_prefix is not None and target != "linux-arm64")):
        raise OptionError(f"{option('ndk')} and {option('executorch_prefix')} build the "
                          f"android-arm64 runner ({option('executorch_prefix')} also "
                          f"linux-arm64); the {target} runner takes neither: drop them or pass "
                          f"{option('target')} android-arm64.")
    with _build_lock():
        if target in BUNDLED and ndk is None:
            base = _compiled(BUNDLED[target], None, None, force, log)
            return _bundled(target, base, force)
        return _compiled(target, ndk, executorch_prefix, force, log)


@contextlib.contextmanager
def _build_lock():
    """One build at a time per cache: two benches (or test workers) starting together must not
    share a CMake build folder, nor one delete a runner folder the other is about to use."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "build.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_prebuilt(folder: Path) -> RunnerBuild:
    """A runner folder built elsewhere (``runner build`` on another machine, or by hand with
    a ``runner.json``), its files checked against the hashes it lists."""
    folder = Path(folder)
    description, launch = bundle.load(folder)
    files = {name: folder / name for name in description["files"]}
    if launch.program not in files:
        raise UserError(f"{folder}/{bundle.DESCRIPTION}: the program {launch.program} is not "
                        f"among its files.")
    return RunnerBuild(description["target"], folder, folder / launch.program, files, launch,
                       description.get("digest", "prebuilt"),
                       description.get("executorch_version", "unknown"), description["abi"],
                       description.get("toolchain", "prebuilt"))


# -- compiling ------------------------------------------------------------------------------

def _compiled(target: str, ndk: Path | None, prefix: Path | None, force: bool,
              log: callable) -> RunnerBuild:
    prefix, cmake_args, compiler = _configure_inputs(target, ndk, prefix, log)
    digest = _digest(target, prefix, compiler, cmake_args)
    out = cache_root() / "runner" / f"{target}-{digest[:16]}"
    if not force and (found := _cached(out)) is not None:
        return found
    build_dir = out.with_name(out.name + ".build")
    shutil.rmtree(build_dir, ignore_errors=True)
    _cmake(["-S", str(SOURCE_DIR), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
            f"-DCMAKE_PREFIX_PATH={prefix}", *cmake_args], log)
    _cmake(["--build", str(build_dir), "-j", str(os.cpu_count() or 1)], log)
    program = build_dir / BINARY
    if target == "host":
        # Runs in place: its RPATH names the wheel, so nothing is copied; the description
        # still lists every library it loads, for the report.
        files = {BINARY: program}
        extra_libs = _host_libraries(program, prefix)
    else:
        libs = bundle.closure(program, [prefix / "lib"], strict=False)
        files = {BINARY: program, **{f"lib/{n}": p for n, p in libs.items()}}
        extra_libs = {}
    toolchain = "bionic (NDK)" if ndk is not None else "glibc"
    launch = Launch("direct", BINARY, None, ("lib",))
    return _publish(out, target, launch, files, digest, toolchain, extra_libs,
                    {"prefix": str(prefix), "compiler": compiler})


def _host_libraries(program: Path, prefix: Path) -> dict[str, Path]:
    """The wheel's libraries the host program loads (the system's are the host's own)."""
    return {f"lib/{n}": p for n, p in bundle.closure(program, [prefix / "lib"],
                                                     strict=False).items()}


def _bundled(target: str, base: RunnerBuild, force: bool) -> RunnerBuild:
    """``base``'s program with its whole runtime closure and glibc's loader (see bundle.py)."""
    sysroot = [AARCH64_SYSROOT] if target == "android-arm64" else HOST_LIB_DIRS
    if target == "android-arm64" and not (AARCH64_SYSROOT / "libc.so.6").is_file():
        raise UserError(f"bundling the android-arm64 runner needs Debian's aarch64 glibc in "
                        f"{AARCH64_SYSROOT}: `apt-get install libc6-arm64-cross "
                        f"libstdc++6-arm64-cross` (g++-aarch64-linux-gnu brings both).")
    interpreter = bundle.elf_interpreter(base.binary)
    if interpreter is None:
        raise UserError(f"{base.binary} has no ELF interpreter to bundle (a static program "
                        f"needs no bundle).")
    loader_name = Path(interpreter).name
    loader = next((d / loader_name for d in sysroot if (d / loader_name).is_file()), None)
    if loader is None:
        raise UserError(f"glibc's loader {loader_name} is in none of "
                        f"{', '.join(map(str, sysroot))}; install the {target} glibc runtime.")
    et_libs = [p.parent for n, p in base.files.items() if n != base.launch.program][:1]
    libs = bundle.closure(base.binary, et_libs + sysroot)
    libs[loader_name] = loader
    h = hashlib.sha256(base.digest.encode())
    for name in sorted(libs):
        h.update(name.encode())
        h.update(bundle.sha256_file(libs[name]).encode())
    digest = h.hexdigest()
    out = cache_root() / "runner" / f"{target}-{digest[:16]}"
    if not force and (found := _cached(out)) is not None:
        return found
    files = {BINARY: base.binary, **{f"lib/{n}": p for n, p in libs.items()}}
    launch = Launch("bundled-loader", BINARY, f"lib/{loader_name}", ("lib",))
    return _publish(out, target, launch, files, digest, "glibc (bundled)", {},
                    {"base_target": base.target, "base_digest": base.digest,
                     "interpreter_replaced": interpreter})


def _publish(out: Path, target: str, launch: Launch, files: dict[str, Path], digest: str,
             toolchain: str, external: dict[str, Path], extra: dict) -> RunnerBuild:
    """Write the folder under a temporary name and rename it into place (never half-written);
    drop older builds of the target."""
    staging = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    bundle.write(staging, target=target, abi=target_abi(target), launch=launch, files=files,
                 extra={"digest": digest, "executorch_version": executorch_version(),
                        "toolchain": toolchain,
                        "external_libraries": {n: str(p) for n, p in external.items()},
                        **extra})
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)
    shutil.rmtree(out.with_name(out.name + ".build"), ignore_errors=True)
    _prune(out, target)
    found = _cached(out)
    assert found is not None
    return found


def _prune(out: Path, target: str) -> None:
    """Drop the target's other builds once unused for STALE_DAYS: another environment (a second
    venv, another ExecuTorch) shares this cache and may be running its own build right now."""
    for stale in out.parent.glob(f"{target}-*"):
        if stale == out or stale.name.endswith(".build") or ".tmp-" in stale.name:
            continue
        try:
            if unused_for_long(stale):
                shutil.rmtree(stale, ignore_errors=True)
        except FileNotFoundError:
            pass


def _cached(out: Path) -> RunnerBuild | None:
    """A finished build folder (its files match its runner.json), or None. A hit marks the
    folder used (its mtime), which keeps ``_prune`` away from it."""
    if not (out / bundle.DESCRIPTION).is_file():
        return None
    with contextlib.suppress(OSError):
        os.utime(out)
    try:
        build = load_prebuilt(out)
    except UserError:
        return None
    description, _ = bundle.load(out)
    external = {n: Path(p) for n, p in description.get("external_libraries", {}).items()}
    if any(not p.is_file() for p in external.values()):
        return None
    return RunnerBuild(build.target, out, build.binary, {**build.files, **external},
                       build.launch, build.digest, build.executorch_version, build.abi,
                       build.toolchain)


def _configure_inputs(target: str, ndk: Path | None, prefix: Path | None,
                      log: callable) -> tuple[Path, list[str], str]:
    for tool in ("cmake", "readelf"):
        if shutil.which(tool) is None:
            raise UserError(f"{tool} is not installed; the native runner is built with CMake "
                            f"and binutils.")
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
    if target != "android-arm64" or ndk is None or prefix is None:
        raise OptionError(f"the {target} runner is built from another target's program; "
                          f"pass {option('ndk')} and {option('executorch_prefix')} only for "
                          f"android-arm64.")
    toolchain = Path(ndk) / "build" / "cmake" / "android.toolchain.cmake"
    if not toolchain.is_file():
        raise UserError(f"{ndk} is not an Android NDK: {toolchain} is missing.")
    if not any(Path(prefix).glob("**/executorch-config.cmake")):
        raise UserError(f"{prefix} holds no executorch-config.cmake: pass the install prefix "
                        f"of ExecuTorch built for arm64-v8a (cmake --install), see the README.")
    args = [f"-DCMAKE_TOOLCHAIN_FILE={toolchain}", "-DANDROID_ABI=arm64-v8a",
            "-DANDROID_PLATFORM=android-28", "-DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE=BOTH"]
    return Path(prefix), args, f"ndk:{Path(ndk).resolve().name}"


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
