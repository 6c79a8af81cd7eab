"""Export jobs run side by side in forked worker processes, one unit's jobs per worker at a time.

Lowering an artifact is mostly single-threaded Python (torch.export, ExecuTorch's passes and
partitioner, the ONNX exporter and simplifier), so an export on N cores runs up to N units at
once. Written here rather than with ``concurrent.futures``: its pool cannot kill a running task,
and a Ctrl-C must stop every worker before the staging folder is removed.

Workers are forked, not spawned: they inherit the model, the reference tensors, the formats
registered in this process (a user's own, a test's) and what the exporters cache, with nothing
pickled on the way in; only the finished records and errors travel back. A unit's jobs stay in
one worker, in order: the FP16 ONNX graph is converted from the FP32 one traced just before, and
the check that two outputs never share a file name sees the files in the order a serial export
writes them. In a worker, Ctrl-C is ignored (the parent stops it) and torch gets its share of
the cores; it writes nothing to this terminal.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue as queues
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..errors import UserError, option

Job = TypeVar("Job")
Progress = Callable[[str, int, int], None]
_POLL_SECONDS = 0.5


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, as ``taskset`` sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                       # not Linux
        return os.cpu_count() or 1


def run_jobs(groups: Sequence[Sequence[tuple[str, Job]]], run: Callable[[Job], Any],
             workers: int, progress: Progress | None = None,
             costs: Sequence[float] | None = None) -> list[Any]:
    """``run`` on every job, in ``workers`` processes (one: here, in order); the results in the
    order of the jobs. ``groups`` are lists of (label, job), the labels for ``progress``; a
    group's jobs run in one process, in order. The groups go out costliest first (``costs``,
    one per group, e.g. its module count), each to the next free worker."""
    total = sum(len(g) for g in groups)
    workers = min(workers, len(groups))
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        results = []
        for label, job in (item for group in groups for item in group):
            if progress:
                progress(label, len(results), total)
            results.append(run(job))
        return results
    costs = costs if costs is not None else [len(g) for g in groups]
    order = sorted(range(len(groups)), key=lambda g: -costs[g])
    return _Pool(groups, run, workers, progress).results(order, total)


class _Pool:
    def __init__(self, groups, run, workers: int, progress: Progress | None) -> None:
        self.groups, self.run, self.workers, self.progress = groups, run, workers, progress
        first = [0]
        for group in groups:
            first.append(first[-1] + len(group))
        self.first = first                       # each group's first job index
        self.threads = max(1, usable_cores() // workers)

    def results(self, order: list[int], total: int) -> list[Any]:
        context = multiprocessing.get_context("fork")
        self.tasks, self.queue = context.SimpleQueue(), context.Queue()
        for g in order:
            self.tasks.put(g)
        for _ in range(self.workers):
            self.tasks.put(None)                 # one stop mark per worker
        processes = [context.Process(target=self._work, daemon=True)
                     for _ in range(self.workers)]
        try:
            for process in processes:
                process.start()
            return self._collect(processes, total)
        finally:                                  # done, failed or interrupted: none survives
            for process in processes:
                if process.is_alive():
                    process.kill()
                process.join()
            self.queue.close()

    def _collect(self, processes: list, total: int) -> list[Any]:
        results: dict[int, Any] = {}
        while len(results) < total:
            try:
                kind, index, payload = self.queue.get(timeout=_POLL_SECONDS)
            except queues.Empty:
                _check_alive(processes)
                continue
            if kind == "start" and self.progress:
                self.progress(payload, len(results), total)
            elif kind == "done":
                results[index] = payload
            elif kind == "error":
                raise payload
        return [results[i] for i in range(total)]

    def _work(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.stdout = sys.stderr = open(os.devnull, "w")  # a lock held at fork time hangs a print
        import torch

        torch.set_num_threads(self.threads)
        while (g := self.tasks.get()) is not None:
            for offset, (label, job) in enumerate(self.groups[g]):
                index = self.first[g] + offset
                self.queue.put(("start", index, label))
                try:
                    self.queue.put(("done", index, self.run(job)))
                except BaseException as exc:      # noqa: BLE001 - the parent re-raises it
                    self.queue.put(("error", index, _portable(exc)))
                    return


def _check_alive(processes: list) -> None:
    for process in processes:
        if process.exitcode not in (None, 0):
            how = (f"was killed by signal {-process.exitcode}" if process.exitcode < 0
                   else f"exited with status {process.exitcode}")
            raise UserError(f"an export worker process {how} (out of memory?); re-run with "
                            f"{option('jobs')} 1 to export in this process")


def _portable(exc: BaseException) -> BaseException:
    """``exc`` with the worker's traceback as a note, or a RuntimeError naming it where the
    exception itself does not survive pickling."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    try:
        exc.add_note(f"in an export worker process:\n{text}")
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:                             # noqa: BLE001 - any unpicklable exception
        return RuntimeError(f"{type(exc).__name__}: {exc}\nin an export worker process:\n{text}")

