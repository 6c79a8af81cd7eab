"""What keeps an export from leaving anything behind: a usable output root, checked first; the
output root removed again when the export fails; and a Ctrl-C that always stops it."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import UserError, option
from ..paths import check_writable_folder
from . import manifest as mf

Progress = Callable[[str, int, int], None]


def check_out_root(root: Path, folder: Path) -> None:
    """Refuse an output root that cannot take the export, without creating anything."""
    check_writable_folder(root, option("out_root"))
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file, where the export folder would go: move it away "
                        f"or pass another {option('out_root')}.")


@contextlib.contextmanager
def removed_if_left_empty(root: Path) -> Iterator[None]:
    """An export that fails or is interrupted removes the output root (and the parents) it
    created, if they are still empty: nothing was written, so nothing is left."""
    created = [p for p in (root, *root.parents) if not p.exists()]
    try:
        yield
    except BaseException:
        for path in created:            # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


class _Remembered:
    interrupted = False


@contextlib.contextmanager
def _remembered_interrupts_unprinted(remembered: Callable[[], bool]) -> Iterator[None]:
    """Python cannot raise out of a weakref callback or a ``__del__``: an interrupt that lands
    in one is printed as "Exception ignored in ..." with a traceback, and dropped (measured:
    in torch's WeakIdKeyDictionary during the ExecuTorch lowering). Once our handler has
    remembered it, it is raised where it can be, so the traceback is noise; any other
    unraisable error is reported as before."""
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if not (isinstance(unraisable.exc_value, KeyboardInterrupt) and remembered()):
            previous(unraisable)
    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def _remember_sigint(signum: int, frame: object) -> None:
    _Remembered.interrupted = True
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_remembered() -> Iterator[None]:
    """Around a command, from before its heavy imports: a Ctrl-C that a library swallows while
    they load is remembered; the export's guard raises it as it starts, and an error it caused
    meanwhile becomes the interrupt. (Measured: one landing in numpy's import left numpy
    half-imported and unnoticed, and the command failed later with a RecursionError in an
    export worker or an AttributeError in matplotlib's import, exit 1.) Only over the default
    handler, in the main thread; the handler before is back afterwards."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    _Remembered.interrupted = False
    previous = signal.signal(signal.SIGINT, _remember_sigint)
    try:
        with _remembered_interrupts_unprinted(lambda: _Remembered.interrupted):
            yield
    except Exception as exc:
        if _Remembered.interrupted:
            raise KeyboardInterrupt from exc
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
        _Remembered.interrupted = False


class InterruptGuard:
    """Makes the first Ctrl-C stop the export, whatever the libraries in between do with it.

    Tracing and lowering code catches exceptions broadly, and a KeyboardInterrupt that lands in
    it can come out as another exception or not at all (see ``onnx_export.capture``). The guard
    remembers the interrupt: any exception raised after it, a step that starts after it and the
    final commit all turn it back into a KeyboardInterrupt. Installed only over the default
    handler (or ``interrupts_remembered``'s, whose interrupt it raises on entry), in the main
    thread; elsewhere it checks nothing and changes nothing.
    """

    def __init__(self) -> None:
        self.interrupted = False
        self.committed = False          # the export is in place: an interrupt stops nothing
        self._holding = False           # during the commit: note an interrupt, raise nothing
        self._previous: object = None
        self._unprinted = contextlib.ExitStack()

    def __enter__(self) -> InterruptGuard:
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) in (signal.default_int_handler,
                                                        _remember_sigint)):
            if _Remembered.interrupted:         # a Ctrl-C while the command was loading
                raise KeyboardInterrupt
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            self._unprinted.enter_context(
                _remembered_interrupts_unprinted(lambda: self.interrupted))
        return self

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.interrupted = True
        if not (self._holding or self.committed):
            raise KeyboardInterrupt

    def check(self) -> None:
        if self.interrupted and not self.committed:
            raise KeyboardInterrupt

    def checked(self, progress: Progress | None) -> Progress:
        """``progress``, checking for a lost interrupt at every step."""
        def report(step: str, done: int, total: int) -> None:
            self.check()
            if progress:
                progress(step, done, total)
        return report

    def commit(self, staging: mf.StagingDir) -> None:
        """Swap the staging folder into place, holding back an interrupt meanwhile: one between
        its two renames would lose the previous export. It comes too late to stop anything,
        so the export completes."""
        self.check()
        self._holding = True
        try:
            staging.commit()
            self.committed = True
        finally:
            self._holding = False

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        self._unprinted.close()
        if self.interrupted and not self.committed and not isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt from exc    # an interrupt turned into an error, or dropped
