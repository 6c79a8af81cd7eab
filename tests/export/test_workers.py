"""Export jobs in worker processes: the same artifacts as in one process, errors and Ctrl-C."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time

import pytest

from seaformer_deploy.errors import UserError
from seaformer_deploy.export.pipeline import ExportOptions, export
from seaformer_deploy.export.workers import run_jobs


def _groups(*sizes: int) -> list[list[tuple[str, int]]]:
    jobs = iter(range(sum(sizes)))
    return [[(f"job {j}", j) for j in (next(jobs) for _ in range(n))] for n in sizes]


def _square_with_pid(job: int) -> tuple[int, int]:
    time.sleep(0.2)                   # long enough for both workers to take groups
    return job * job, os.getpid()


def test_results_come_back_in_job_order_from_several_processes():
    seen = []
    results = run_jobs(_groups(3, 1, 2, 2), _square_with_pid, 2,
                       lambda step, done, total: seen.append((step, total)))
    assert [r[0] for r in results] == [j * j for j in range(8)]
    pids = {r[1] for r in results}
    assert len(pids) == 2 and os.getpid() not in pids
    assert sorted(seen) == sorted((f"job {j}", 8) for j in range(8))
    # A group's jobs stay in one process.
    assert len({results[j][1] for j in (0, 1, 2)}) == 1


def test_one_worker_runs_here_in_order():
    results = run_jobs(_groups(2, 2), _square_with_pid, 1)
    assert results == [(j * j, os.getpid()) for j in range(4)]


def _fails_on_three(job: int) -> int:
    if job == 3:
        raise UserError("job 3 is bad")
    time.sleep(0.05)
    return job


def test_an_error_in_a_worker_is_raised_here_with_its_traceback():
    with pytest.raises(UserError, match="job 3 is bad") as caught:
        run_jobs(_groups(2, 2, 2), _fails_on_three, 2)
    assert any("in an export worker process" in note for note in caught.value.__notes__)
    assert multiprocessing.active_children() == []


def _dies(job: int) -> int:
    if job == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    return job


def test_a_worker_killed_by_a_signal_is_a_clear_error():
    with pytest.raises(UserError, match=r"killed by signal 9.*jobs.* 1"):
        run_jobs(_groups(1, 1, 1), _dies, 2)
    assert multiprocessing.active_children() == []


def _sleeps(job: int) -> int:
    time.sleep(60)
    return job


def test_an_interrupt_stops_every_worker_at_once():
    def interrupt(step: str, done: int, total: int) -> None:
        raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_jobs(_groups(1, 1), _sleeps, 2, interrupt)
    assert time.monotonic() - started < 10
    assert multiprocessing.active_children() == []


def test_a_parallel_export_writes_what_one_process_writes(tmp_path):
    """Byte for byte, in the same manifest order, with the same parity."""
    def manifest(jobs: int) -> dict:
        result = export(ExportOptions(model="seaformer-t", input_size=(64, 64),
                                      out_root=tmp_path / str(jobs), formats=("onnx",),
                                      jobs=jobs))
        return json.loads((result.folder / "manifest.json").read_text())

    one, two = manifest(1), manifest(2)
    keep = ("path", "sha256", "parity", "inputs", "outputs")
    assert ([{k: a[k] for k in keep} for a in one["artifacts"]]
            == [{k: a[k] for k in keep} for a in two["artifacts"]])
    assert one["chains"] == two["chains"] and two["parity_passed"]
