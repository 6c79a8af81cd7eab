"""Ctrl-C during `export`: the first one stops it at once, in every step, and leaves nothing.

The end-to-end tests send a real SIGINT to `python -m seaformer_deploy.cli export` at several
moments: from outside after a delay, and from inside the process a moment after the exporter
starts tracing (where the ONNX exporter used to turn the interrupt into a failed capture
strategy and carry on with the next one: the export then completed with exit 0). They run side
by side, to stay within a minute.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from helpers import randomize
from seaformer_deploy.export import onnx_export
from seaformer_deploy.export.guard import interrupts_remembered
from seaformer_deploy.export.pipeline import InterruptGuard
from seaformer_deploy.models.registry import build

QUICK = ["export", "--input-size", "64x64", "--precisions", "fp32", "--no-components"]
# The guard tests send this process SIGINT: only where Python's own handler would get it.
needs_default_sigint = pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
    reason="SIGINT is not handled by Python's default handler here")

# Runs the CLI with a timer that sends this process SIGINT `delay` s after `target` is entered.
INTERRUPT_INSIDE = textwrap.dedent("""
    import importlib, os, signal, sys, threading
    module, name, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    from seaformer_deploy.quiet import quiet_third_party_logs
    quiet_third_party_logs()          # as the CLI does before it imports the exporters
    owner = importlib.import_module(module)
    real, fired = getattr(owner, name), []
    def entered(*args, **kwargs):
        if not fired:
            fired.append(True)
            threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT)).start()
        return real(*args, **kwargs)
    setattr(owner, name, entered)
    from seaformer_deploy.cli import main
    sys.argv = ["seaformer-deploy", *sys.argv[4:]]
    main()
""")


def _default_sigint() -> None:
    # A suite started in the background (`pytest &`) inherits SIGINT ignored; a Ctrl-C test
    # needs the export to get the signal as an interactive shell would deliver it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(argv: list[str], out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *argv, "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """Weights from a file: the export skips calibrating synthetic weights and soon traces."""
    path = tmp_path_factory.mktemp("ckpt") / "seaformer_t.pth"
    torch.save({"state_dict": randomize(build("seaformer-t", 19), seed=1).state_dict()}, path)
    return path


def test_ctrl_c_at_any_step_stops_the_export_and_leaves_nothing(tmp_path, checkpoint):
    cli = ["-m", "seaformer_deploy.cli", *QUICK, "--formats", "onnx,pte"]
    # From 4 s on the export command runs (before, Python and Typer are still starting), first
    # importing torch, then calibrating the synthetic weights.
    from_outside = {f"SIGINT after {d} s": (d, tmp_path / f"out{d}", cli) for d in (4, 12)}
    inside = {
        "SIGINT 1 s into the ONNX capture": ("onnx", "torch.export", "export", 1.0),
        "SIGINT 1 s into the ExecuTorch lowering": ("pte", "executorch.exir",
                                                    "to_edge_transform_and_lower", 1.0),
    }
    runs = {}
    for label, (fmt, module, name, delay) in inside.items():
        out = tmp_path / name
        runs[label] = (_start(["-c", INTERRUPT_INSIDE, module, name, str(delay), *QUICK,
                               "--formats", fmt, "--checkpoint", str(checkpoint)], out), out)
    started = time.monotonic()
    for label, (delay, out, argv) in from_outside.items():
        runs[label] = (_start(argv, out), out)
    for label, (delay, out, _) in sorted(from_outside.items(), key=lambda kv: kv[1][0]):
        time.sleep(max(0.0, started + delay - time.monotonic()))
        runs[label][0].send_signal(signal.SIGINT)
    for label in [*from_outside, *inside]:             # the signalled ones first: timed
        proc, out = runs[label]
        stdout, stderr = proc.communicate(timeout=240)
        said = f"{label} (done after {time.monotonic() - started:.0f} s):\n{stdout}\n{stderr}"
        # Or killed by SIGINT, after the message: CPython 3.11 exits that way once an interrupt
        # escaped a PyRun_* call inside an extension's import, even when caught (checked: its
        # _Py_UnhandledKeyboardInterrupt was 1). A shell reports both as 130.
        assert proc.returncode in (130, -signal.SIGINT), said
        if label in from_outside:      # at once: not after the step, let alone the export
            assert time.monotonic() - started < from_outside[label][0] + 20, said
        assert [line for line in stderr.splitlines() if line.strip()] == [
            "interrupted: nothing was written"], said
        assert "Traceback" not in stderr + stdout, said
        left = sorted(p.name for p in out.iterdir()) if out.exists() else []
        assert left == [], f"{said}\nleft behind: {left}"     # no export, no .staging-*
        assert not out.exists(), f"{said}\nthe output root it created was left behind"


# --- The guard on its own: what it does with an interrupt a library mishandles. ---

def _sigint_now() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)                     # the handler raises KeyboardInterrupt in here


@needs_default_sigint
def test_an_interrupt_turned_into_an_error_is_an_interrupt():
    with pytest.raises(KeyboardInterrupt):
        with InterruptGuard():
            try:
                _sigint_now()
            except KeyboardInterrupt:      # what torch.onnx's capture cleanup did
                raise AttributeError("partially initialized module 'torch._dynamo'") from None


@needs_default_sigint
def test_an_interrupt_dropped_by_a_library_stops_the_next_step():
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with InterruptGuard() as guard:
            progress = guard.checked(lambda step, done, total: steps.append(step))
            progress("model onnx fp32", 0, 2)
            try:
                _sigint_now()
            except KeyboardInterrupt:      # swallowed: the step completes
                pass
            progress("model pte fp32", 1, 2)
    assert steps == ["model onnx fp32"]


@needs_default_sigint
def test_an_interrupt_swallowed_while_the_command_loads_stops_the_export():
    """A Ctrl-C in the command's imports that a library swallows (one in numpy's import did):
    the guard raises it on entry, and an error it caused on the way becomes the interrupt."""
    def swallowed() -> None:
        try:
            _sigint_now()
        except KeyboardInterrupt:
            pass
    with pytest.raises(KeyboardInterrupt):
        with interrupts_remembered():
            swallowed()
            with InterruptGuard():
                pytest.fail("the export started after the interrupt")
    with pytest.raises(KeyboardInterrupt) as caught:
        with interrupts_remembered():
            swallowed()
            raise AttributeError("module 'numpy' has no attribute 'subtract'")
    assert isinstance(caught.value.__cause__, AttributeError)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@needs_default_sigint
def test_without_an_interrupt_the_command_window_changes_nothing():
    with pytest.raises(ValueError):
        with interrupts_remembered():
            with InterruptGuard() as guard:
                guard.check()
            raise ValueError("a user error stays itself")
    with interrupts_remembered():             # a later command starts with nothing remembered
        with InterruptGuard() as guard:
            guard.check()
    assert not guard.interrupted
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@needs_default_sigint
def test_an_interrupt_during_the_commit_lets_it_complete():
    """The two renames of the commit are never split; an interrupt held back meanwhile comes
    too late to stop anything, and the previous SIGINT handler is back afterwards."""
    class Staging:
        renamed = 0

        def commit(self) -> None:
            self.renamed += 1                          # the old folder is out of the way
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)                            # the handler runs in here: held
            self.renamed += 1                          # the new one is in place

    staging = Staging()
    with InterruptGuard() as guard:
        guard.commit(staging)
    assert staging.renamed == 2 and guard.interrupted and guard.committed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@needs_default_sigint
def test_an_interrupt_in_a_weakref_callback_is_kept_and_not_printed(monkeypatch):
    """Python cannot raise out of a weakref callback: an interrupt landing in one (in CI: in
    torch's WeakIdKeyDictionary during the lowering) was printed as "Exception ignored" with a
    traceback. The guard keeps it, stops the export at its next check, and prints nothing."""
    import weakref

    class Thing:
        pass

    reported = []                                   # what Python would print
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    with pytest.raises(KeyboardInterrupt):
        with InterruptGuard() as guard:
            thing = Thing()
            ref = weakref.ref(thing, lambda _: _sigint_now())
            del thing                                   # the callback runs here, and swallows
            assert ref() is None and guard.interrupted
            guard.check()
    assert reported == [] and sys.unraisablehook == reported.append


@needs_default_sigint
def test_other_unraisable_errors_are_still_reported(monkeypatch):
    import weakref

    class Thing:
        pass

    def fails(_):
        raise ValueError("a real bug in a callback")

    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    with InterruptGuard():
        thing = Thing()
        ref = weakref.ref(thing, fails)
        del thing
    assert ref() is None
    assert [str(u.exc_value) for u in reported] == ["a real bug in a callback"]


def test_no_guard_outside_the_main_thread():
    errors, handler = [], signal.getsignal(signal.SIGINT)

    def run() -> None:
        try:
            with InterruptGuard() as guard:
                guard.check()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert errors == [] and signal.getsignal(signal.SIGINT) is handler


def test_the_onnx_exporter_gets_a_traced_program(monkeypatch):
    """torch.onnx.export given a module retries other capture strategies when one fails, which
    is how it lost interrupts; export_onnx hands it the program torch.export traced."""
    seen = []

    def fake_onnx_export(model, *args, **kwargs):
        seen.append(model)
        raise RuntimeError("stop here")
    monkeypatch.setattr(torch.onnx, "export", fake_onnx_export)

    class Unit:
        name, input_names, output_names = "conv", ("image",), ("out",)
        module = torch.nn.Conv2d(3, 4, 3).eval()
    with pytest.raises(RuntimeError, match="stop here"):
        onnx_export.export_onnx(Unit(), [torch.zeros(1, 3, 8, 8)])
    assert isinstance(seen[0], torch.export.ExportedProgram)
