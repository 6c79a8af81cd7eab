"""Keep third-party import-time noise out of our output (it says nothing actionable to users)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

# torchao warns that optional CUDA kernels are missing; torch's pytree warns about torchao's use
# of a deprecated registration. Both fire on importing ExecuTorch on every CPU-only machine.
_NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "executorch", "onnxscript", "onnx_ir")


def quiet_third_party_logs() -> None:
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def exporters_quieted() -> Iterator[None]:
    """The exporters narrate each step on stdout and warn about internals; keep the CLI readable."""
    sink = io.StringIO()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[None]:
    """Capture what native code writes to file descriptor 2; replay it only if we fail.

    ExecuTorch's runtime logs CPU-detection probes (``[cpuinfo_utils.cpp:...]``) straight to
    fd 2 on first use, which Python-level redirection cannot catch. A Ctrl-C is no failure of
    the runtime: it restores fd 2 and replays nothing, so the interrupt's message stands alone.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except Exception:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
