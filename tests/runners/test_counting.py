"""Instruction mode's pieces against the real valgrind: one dump per counted call, the same
count every time, and the dump format read as callgrind writes it."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

import pytest

from seaformer_deploy.bench.instructions import read_counts
from seaformer_deploy.runners import counting

needs_valgrind = pytest.mark.skipif(
    not shutil.which("valgrind") and not os.environ.get("SEAFORMER_REQUIRE_VALGRIND"),
    reason="valgrind is not installed (CI installs it and sets SEAFORMER_REQUIRE_VALGRIND)")

# A program with the runner's shape: setup, then calls of one named function, each doing
# work proportional to its argument.
PROGRAM = r"""
#include <stdio.h>
__attribute__((noinline)) long seaformer_timed_execute(long n) {
  volatile long s = 0;
  for (long i = 0; i < n; i++) s += i;
  return s;
}
int main(int argc, char** argv) {
  long setup = 0;
  for (long i = 0; i < 5000000; i++) setup += i;      /* not counted */
  long t = 0;
  for (int k = 1; k <= 4; k++) t += seaformer_timed_execute(k * 100000L);
  printf("%ld %ld\n", setup, t);
  return 0;
}
"""


def test_a_dump_is_read_with_its_trailing_zeros_left_out():
    text = ("# callgrind format\nevents: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\n"
            "summary: 1200006 200002 200001\ntotals: 1200006 200002 200001\n")
    assert counting.read_dump(text) == {"Ir": 1200006, "I1mr": 0, "D1mr": 0, "D1mw": 0,
                                        "ILmr": 0, "DLmr": 0, "DLmw": 0}
    with pytest.raises(counting.CountingError, match="no events or totals"):
        counting.read_dump("events: Ir\n")


@needs_valgrind
def test_each_call_is_counted_alone_and_the_same_every_time(tmp_path):
    source = tmp_path / "prog.c"
    source.write_text(PROGRAM)
    subprocess.run(["cc", "-O2", "-g", "-o", str(tmp_path / "prog"), str(source)], check=True)
    runs = []
    for attempt in range(2):
        prefix = f"callgrind-{attempt}"
        argv = counting.callgrind_argv(counting.NATIVE_SYMBOL, f"{prefix}.%p")
        subprocess.run([*argv, str(tmp_path / "prog")], cwd=tmp_path, check=True,
                       capture_output=True)
        # one warm-up call and three counted ones, for one "artifact"
        runs.append(read_counts(str(tmp_path), prefix, ["prog"], 3)["prog"]["Ir"])
    assert runs[0] == runs[1]                                  # deterministic
    second, third, fourth = runs[0]
    assert third - second == pytest.approx(fourth - third, rel=1e-4)   # linear in the work
    assert 100_000 * 3 <= third - second <= 100_000 * 12      # a few instructions per step
    assert second < 5_000_000                                  # the setup loop is not in it
    assert not list(tmp_path.glob("callgrind-*"))             # dumps removed once read


@needs_valgrind
def test_the_wrong_number_of_dumps_is_an_error(tmp_path):
    source = tmp_path / "prog.c"
    source.write_text(PROGRAM)
    subprocess.run(["cc", "-O2", "-o", str(tmp_path / "prog"), str(source)], check=True)
    argv = counting.callgrind_argv(counting.NATIVE_SYMBOL, "callgrind-0.%p")
    subprocess.run([*argv, str(tmp_path / "prog")], cwd=tmp_path, check=True,
                   capture_output=True)
    with pytest.raises(counting.CountingError, match="wrote 4 dumps .* expected 8"):
        read_counts(str(tmp_path), "callgrind-0", ["a", "b"], 3)


def test_the_call_library_runs_a_python_callback():
    lib = ctypes.CDLL(str(counting.call_library()))
    callback_type = ctypes.CFUNCTYPE(None)
    seen = []
    callback = callback_type(lambda: seen.append(1))
    lib.seaformer_timed_call.argtypes = [callback_type]
    lib.seaformer_timed_call(callback)
    lib.seaformer_timed_call(callback)
    assert seen == [1, 1]
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(counting.call_library())],
                             capture_output=True, text=True).stdout
    assert counting.CALL_SYMBOL in symbols


def test_no_valgrind_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(counting.CountingError, match="apt-get install valgrind"):
        counting.valgrind()

