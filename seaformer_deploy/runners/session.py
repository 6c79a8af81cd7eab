"""Runner sessions on a device: which runner build, staging it, checking it starts, and running
one plan per process. The bench and the A/B gate share all of it.

Which native runner a device gets (first that applies):
  1. a prebuilt runner folder (``--runner DIR``, with its ``runner.json``);
  2. ``--runner-target``;
  3. the NDK inputs (``--ndk`` and ``--executorch-prefix``): the NDK build of android-arm64;
  4. the matching device profile's ``runner_target``;
  5. the device itself: the local machine runs the host runner; a phone's
     ``ro.product.cpu.abi`` picks the bundle (arm64-v8a -> android-arm64, x86_64 ->
     android-x86_64); another ABI is an error naming it.
Before any timing the runner is started once with ``--version``: a runner that cannot start
there (a missing ELF interpreter or library, the wrong architecture) fails the bench once, with
what is missing and what to do.
"""

from __future__ import annotations

import re
import shlex
import signal as signal_module
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..devices import Device, DeviceInfo
from ..devices.adb_link import LinkTimeout
from ..errors import UserError, option
from ..export import formats as fmts
from . import native
from .bundle import Launch, elf_interpreter, elf_machine
from .plan import PlannedModel, Protocol, RunResult, current_model, parse_result, plan_text

Progress = Callable[[str, int, int], None]
ABI_TARGETS = {"arm64-v8a": "android-arm64", "x86_64": "android-x86_64"}


class RunnerError(UserError):
    pass


@dataclass(frozen=True)
class RunnerChoice:
    """What the user asked for (see the module docstring); all None: decided by the device."""

    target: str | None = None
    ndk: Path | None = None
    executorch_prefix: Path | None = None
    prebuilt: Path | None = None


@dataclass
class Runner:
    format: str
    identity: dict                  # what the report records about it
    files: dict[str, Path] = field(default_factory=dict)   # relative name -> local file
    launch: Launch | None = None    # native runners: how the staged files start
    argv: list[str] = field(default_factory=list)   # the command, before PLAN and RESULT
    env: dict[str, str] = field(default_factory=dict)


def device_abi(device: Device, info: DeviceInfo) -> str:
    """The Android ABI of the device's CPU (``ro.product.cpu.abi``; the host's own locally)."""
    if device.kind == "local":
        return native.host_abi()
    abi = info.properties.get("abi", "")
    if not abi:
        raise RunnerError(f"{device.name} did not report ro.product.cpu.abi, so the runner "
                          f"build cannot be chosen; pass {option('target')} (android-arm64 for "
                          f"arm64-v8a phones, android-x86_64 for x86_64 emulators).")
    return abi


def choose_target(device: Device, info: DeviceInfo, choice: RunnerChoice,
                  profile: dict | None) -> tuple[str, str]:
    """(target, why) for a native runner build that is not prebuilt."""
    if choice.target:
        if device.kind == "local" and choice.target != "host":
            raise RunnerError(f"{option('target')} {choice.target} is for adb devices; the "
                              f"local device runs the host runner.")
        return choice.target, "--runner-target"
    if choice.ndk is not None:
        return "android-arm64", "--ndk (the NDK build)"
    if device.kind == "local":
        return "host", "the local machine"
    if profile and profile.get("runner_target"):
        return profile["runner_target"], f"{profile['name']} profile ({profile['file']})"
    abi = device_abi(device, info)
    if abi not in ABI_TARGETS:
        raise RunnerError(f"{device.name} is {abi}: the runner is built for arm64-v8a phones "
                          f"and x86_64 emulators only ({', '.join(ABI_TARGETS)}).")
    return ABI_TARGETS[abi], f"ro.product.cpu.abi {abi}"


def native_runner(device: Device, info: DeviceInfo, choice: RunnerChoice,
                  profile: dict | None, progress: Progress | None = None,
                  fmt: str = fmts.PTE.name) -> Runner:
    """The native runner build for ``device``, built or found in the cache, for ``fmt``."""
    if choice.prebuilt is not None:
        build, why = native.load_prebuilt(choice.prebuilt), f"--runner {choice.prebuilt}"
    else:
        target, why = choose_target(device, info, choice, profile)
        if progress:
            progress(f"building the native runner for {target}", 0, 0)
        build = native.build_runner(target, choice.ndk, choice.executorch_prefix)
    abi = device_abi(device, info)
    if build.abi != abi:
        raise RunnerError(f"the {build.target} runner is built for {build.abi}, but "
                          f"{device.name} is {abi}; drop {option('target')}/"
                          f"{option('prebuilt')} to get the build for {abi}.")
    identity = {**build.identity(), "chosen_by": why}
    return Runner(fmt, identity, dict(build.files), build.launch)


def onnx_runner(device: Device, fmt: str = fmts.ONNX.name) -> Runner:
    """The ONNX Runtime runner (this Python) for ``fmt``; it runs on the local device only."""
    if device.kind not in fmts.RunnerKind.ONNXRUNTIME.devices:
        raise RunnerError(f"{fmt.upper()} artifacts run on the local device only; pass "
                          f"{option('formats')} {','.join(device.formats)}.")
    import onnxruntime

    return Runner(fmt, {"runner": "seaformer-onnx-runner", "runtime": "onnxruntime",
                        "runtime_version": onnxruntime.__version__,
                        "python": sys.version.split()[0]},
                  argv=[sys.executable, "-m", "seaformer_deploy.runners.onnx_runner"])


# How each kind of bench runner is made (``Format.runner`` in export/formats.py), from
# (device, info, choice, profile, progress, format).
_BUILDERS: dict[fmts.RunnerKind, Callable[..., Runner]] = {
    fmts.RunnerKind.NATIVE: native_runner,
    fmts.RunnerKind.ONNXRUNTIME: lambda device, *_, fmt: onnx_runner(device, fmt),
}


def build_runners(formats: set[str], device: Device, info: DeviceInfo, choice: RunnerChoice,
                  profile: dict | None, progress: Progress | None = None) -> dict[str, Runner]:
    """One runner per format, in table order, each of the kind its format declares."""
    return {name: _BUILDERS[fmts.get(name).runner](device, info, choice, profile, progress,
                                                    fmt=name)
            for name in fmts.by_rank(formats)}


# -- staging --------------------------------------------------------------------------------

@dataclass
class Staged:
    paths: dict[str, str]           # local name (see stage_files) -> path on the device
    workdir: str


def stage_files(device: Device, local: dict[str, Path], runners: dict[str, Runner]) -> Staged:
    """Put ``local`` (name -> file) and the runners' files on the device; point each native
    runner's command at its staged files."""
    local = dict(local)
    for fmt, runner in runners.items():
        local |= {f"runner/{fmt}/{name}": path for name, path in runner.files.items()}
    where = device.stage(list(dict.fromkeys(local.values())))
    paths = {name: where[path] for name, path in local.items()}
    for fmt, runner in runners.items():
        if runner.launch is not None:
            prefix = f"runner/{fmt}/"
            mine = {name[len(prefix):]: p for name, p in paths.items() if name.startswith(prefix)}
            runner.argv, runner.env = runner.launch.argv(mine)
    return Staged(paths, device.workdir())


def make_dirs(device: Device, folders: list[str]) -> None:
    if not folders:
        return
    made = device.shell("mkdir -p " + " ".join(shlex.quote(f) for f in folders))
    if made.returncode != 0:
        raise RunnerError(f"cannot create the work folders on {device.name}: {made.stderr}")


# -- does it start? -------------------------------------------------------------------------

def check_start(device: Device, runner: Runner, workdir: str) -> dict:
    """Start the staged runner once with ``--version``; its answer, or a RunnerError that says
    what is missing on the device and what to do."""
    try:
        proc = device.run([*runner.argv, "--version"], timeout=120, cwd=workdir, env=runner.env)
    except (LinkTimeout, subprocess.TimeoutExpired):
        raise RunnerError(f"the {runner.identity.get('target')} runner did not answer "
                          f"--version on {device.name} within 120 s.") from None
    text = (proc.stdout or "").strip()
    if proc.returncode == 0 and text.startswith("{"):
        import json

        try:
            return json.loads(text.splitlines()[-1])
        except ValueError:
            pass
    raise RunnerError(_why_not_started(device, runner, proc.returncode,
                                       (proc.stderr or "") + text))


def _why_not_started(device: Device, runner: Runner, code: int, output: str) -> str:
    target = runner.identity.get("target", "native")
    head = f"the {target} runner cannot start on {device.name}"
    tail = "\n".join(output.strip().splitlines()[-4:])
    program = runner.files.get(runner.launch.program) if runner.launch else None
    interp = elf_interpreter(program) if program and runner.launch.mode == "direct" else None
    if interp and device.shell(f"[ -e {shlex.quote(interp)} ]").returncode != 0:
        return (f"{head}: its ELF interpreter {interp} does not exist there (it is glibc's "
                f"loader; Android has bionic's /system/bin/linker64), so the kernel refuses "
                f"it (exit {code}). Drop {option('target')} to get the bundled runner, which "
                f"brings its own loader (android-arm64 for arm64-v8a phones), or build with "
                f"the NDK ({option('ndk')} PATH {option('executorch_prefix')} PATH).")
    missing = re.search(r"error while loading shared libraries: ([^:\s]+)", output)
    if missing:
        return (f"{head}: it needs {missing.group(1)}, which is neither among the runner "
                f"files pushed nor on the device. Rebuild the runner (`seaformer-deploy runner "
                f"build --target {target} --force`) and check its runner.json lists it.")
    if "Exec format error" in output or code == 126:
        machine = elf_machine(program) if program else "another CPU"
        return (f"{head}: the device cannot execute it ({machine} code; the device reports "
                f"{device.properties().get('abi', 'another ABI')}). Drop {option('target')} "
                f"and {option('prebuilt')} to get the build for its ABI.\n{tail}")
    return f"{head}: `--version` exited with status {code}:\n{tail}"


# -- one runner process ---------------------------------------------------------------------

class RunnerDied(RunnerError):
    """A runner process exited abnormally or hung; ``model`` is the one it was working on."""

    def __init__(self, runner: str, tag: str, model: str | None, phase: str | None,
                 returncode: int | None, stderr: str, timeout: float | None = None) -> None:
        self.runner, self.tag, self.model, self.phase = runner, tag, model, phase
        self.returncode, self.timeout = returncode, timeout
        self.stderr_tail = "\n".join(stderr.strip().splitlines()[-15:])
        super().__init__(f"the {runner} runner {self.reason()} in block {tag}"
                         + (f" ({phase} of {model})" if model else "")
                         + (f":\n{self.stderr_tail}" if self.stderr_tail else ""))

    def signal(self) -> str | None:
        """The signal that killed it: subprocess reports -N, a device shell 128+N."""
        code = self.returncode
        number = -code if code is not None and code < 0 else (
            code - 128 if code is not None and 128 < code < 128 + 65 else None)
        if number is None:
            return None
        try:
            return signal_module.Signals(number).name
        except ValueError:
            return f"signal {number}"

    def reason(self) -> str:
        if self.timeout is not None:
            return f"hung (no result within {self.timeout:.0f} s; killed)"
        name = self.signal()
        return f"was killed by {name}" if name else f"exited with status {self.returncode}"

    def record(self, block: int) -> dict:
        return {"block": block, "runner": self.runner, "phase": self.phase,
                "reason": self.reason(), "returncode": self.returncode,
                "signal": self.signal(), "timeout_seconds": self.timeout,
                "stderr_tail": self.stderr_tail}


def run_plan(device: Device, runner: Runner, models: list[PlannedModel], protocol: Protocol,
             workdir: str, tag: str | int, timeout: float | None = None
             ) -> tuple[dict, RunResult]:
    """One runner process over ``models``, run in ``workdir`` (relative output folders in the
    plan resolve there), with the device state read before and after. A runner that dies or
    hangs raises ``RunnerDied`` naming the model it was in (from its progress file)."""
    plan_path = f"{workdir}/plan-{tag}.txt"
    result_path = f"{workdir}/result-{tag}.json"
    progress_path = f"{workdir}/progress-{tag}.txt"     # relative in the plan: cwd is workdir
    device.write_text(plan_path, plan_text(protocol, models, f"progress-{tag}.txt"))
    before = device.state()
    limit = timeout or _timeout(protocol, len(models))
    started = time.perf_counter()
    try:
        proc = device.run([*runner.argv, plan_path, result_path], timeout=limit, cwd=workdir,
                          env=runner.env)
    except (LinkTimeout, subprocess.TimeoutExpired):
        device.reconnect()              # the link's state is unknown after a timeout
        device.kill_session()
        raise _died(device, runner, tag, progress_path, None, "", limit) from None
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise _died(device, runner, tag, progress_path, proc.returncode,
                    proc.stderr or proc.stdout)
    after = device.state()
    result = parse_result(device.read_text(result_path))
    block = {"index": int(str(tag).split(".")[0]), "format": runner.format,
             "artifacts": [m.id for m in models],
             "protocol": asdict(protocol), "state_before": before.to_dict(),
             "state_after": after.to_dict(), "wall_seconds": round(wall, 3),
             "pinned": result.pinned, "pin_error": result.pin_error,
             "threads": result.threads, "peak_rss_kb": result.peak_rss_kb,
             "runtime_version": result.runtime_version}
    return block, result


def _died(device: Device, runner: Runner, tag: str | int, progress_path: str,
          returncode: int | None, stderr: str, timeout: float | None = None) -> RunnerDied:
    try:
        where = current_model(device.read_text(progress_path))
    except (UserError, OSError):
        where = None
    phase, model = where if where else (None, None)
    return RunnerDied(runner.format, str(tag), model, phase, returncode, stderr, timeout)


def _timeout(protocol: Protocol, n: int) -> float:
    """Generous: each model's warm-up and timing minima ten times over, plus a minute."""
    return 60 + 10 * n * (protocol.warmup_seconds + protocol.min_seconds + 5)
