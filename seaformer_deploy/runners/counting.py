"""Instruction mode: run a host runner under valgrind's callgrind and count each timed iteration.

Callgrind executes the program on a synthetic CPU: the instructions it retires (``Ir``) and the
cache misses of its simulated caches (first level ``I1mr``/``D1mr``/``D1mw``, last level
``ILmr``/``DLmr``/``DLmw``) are the same however loaded the machine is, so a 1 % change in the
work a program does shows in one short run, where latency on a shared VM needs many. It is a
proxy for the work done, not a latency: memory stalls, frequency and the real CPU's
microarchitecture are not in it. Valgrind also reports its own CPU to the program (no AVX-512,
AVX2 at most), so XNNPACK and ONNX Runtime pick those kernels: the counts are of that build
path, on every machine alike.

Only the timed iterations are counted: each runs through one named function, which
``--toggle-collect`` counts and ``--dump-after`` dumps, one file per iteration. The native runner
has ``seaformer_timed_execute`` (runner.cpp); the ONNX runner, Python, calls ONNX Runtime
through ``seaformer_timed_call`` of a small library built here (ONNX Runtime's Python module
exports no symbol callgrind could toggle on).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import UserError
from ..paths import cache_root

NATIVE_SYMBOL = "seaformer_timed_execute"
CALL_SYMBOL = "seaformer_timed_call"
EVENTS = ("Ir", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw")

# Ours: the smallest C that gives the Python runner a symbol to toggle on. noinline and the
# volatile call keep the function and its frame however the compiler optimises.
_CALL_SOURCE = """\
typedef void (*seaformer_fn)(void);
__attribute__((noinline, visibility("default"))) void seaformer_timed_call(seaformer_fn fn) {
  volatile seaformer_fn call = fn;
  call();
}
"""


class CountingError(UserError):
    pass


def valgrind() -> str:
    found = shutil.which("valgrind")
    if not found:
        raise CountingError("--metric instructions runs the runner under valgrind, which is not "
                            "installed here; install it (Debian/Ubuntu: apt-get install "
                            "valgrind) or measure latency.")
    return found


def call_library(log=None) -> Path:
    """The counting library for the ONNX runner, compiled once into the cache."""
    digest = hashlib.sha256(_CALL_SOURCE.encode()).hexdigest()[:16]
    out = cache_root() / "counting" / f"libseaformer_count-{digest}.so"
    if out.is_file():
        return out
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise CountingError("--metric instructions builds a small C library for the ONNX "
                            "runner and found no C compiler (cc or gcc); install one, or "
                            "count .pte artifacts only (--formats pte).")
    out.parent.mkdir(parents=True, exist_ok=True)
    source = out.with_name(f"{out.stem}-{os.getpid()}.c")     # per process: two may build
    source.write_text(_CALL_SOURCE)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    proc = subprocess.run([cc, "-O2", "-g", "-shared", "-fPIC", "-o", str(tmp), str(source)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise CountingError(f"building the counting library failed: {proc.stderr.strip()}")
    tmp.replace(out)
    source.unlink()
    return out


def callgrind_argv(symbol: str, out_file: str) -> list[str]:
    """The valgrind command that prefixes a runner's argv: count only inside ``symbol``, one
    dump per call (``out_file``.1, .2, ...), with the cache simulation."""
    return [valgrind(), "--tool=callgrind", "--collect-atstart=no",
            f"--toggle-collect={symbol}", f"--dump-after={symbol}", "--cache-sim=yes",
            "--dump-instr=no", "--compress-strings=no", f"--callgrind-out-file={out_file}"]


def read_dump(text: str) -> dict[str, int]:
    """One callgrind dump's event totals (its ``events:`` and ``summary:``/``totals:`` lines)."""
    events = totals = None
    for line in text.splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith(("summary:", "totals:")):
            totals = [int(v) for v in line.split()[1:]]
    if events is None or totals is None:
        raise CountingError("a callgrind dump has no events or totals line: valgrind's output "
                            "format is not the one this version reads")
    counts = dict(zip(events, totals + [0] * (len(events) - len(totals))))
    return {e: counts.get(e, 0) for e in EVENTS}


def dump_files(folder: Path, out_file: str) -> list[Path]:
    """The per-call dumps of one run, in call order (``name.1``, ``name.2``, ...)."""
    pattern = re.compile(re.escape(out_file) + r"\.(\d+)$")
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if (m := pattern.match(p.name))]
    return [p for _, p in sorted(found)]
