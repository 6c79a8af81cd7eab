"""``bench --metric instructions``: count each artifact's timed iterations under callgrind.

One runner process per format, under valgrind (``runners/counting.py``), with a plan whose
order is fixed: every artifact warms up once (the first run allocates and packs what later runs
reuse), then each runs its ``iterations`` counted ones in plan order (one round), each dumped
on its own. So the dumps map to artifacts by position, and their number is checked. The counts
are the report's measurement; the runner's own timings under valgrind are kept as they came
(tens of times the native latency), not latencies of the program. The last run writes the
outputs, so on-device parity is checked as in latency mode (on valgrind's CPU, with the kernels
it makes the runtimes choose).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..export import formats as fmts
from ..runners import counting
from ..runners.plan import Protocol
from ..runners.session import Runner

METRICS = ("latency", "instructions")
WARMUP = 1


def counting_protocol(protocol: Protocol, iterations: int, fmt: str) -> Protocol:
    library = str(counting.call_library()) if fmt != fmts.PTE.name else None
    return replace(protocol, warmup_iterations=WARMUP, warmup_seconds=0.0,
                   iterations=iterations, min_seconds=0.0, rounds=1, cooldown_seconds=0.0,
                   count_library=library)


def counting_runner(runner: Runner, prefix: str) -> Runner:
    """``runner`` under callgrind, counting the function its timed iterations run through."""
    symbol = counting.NATIVE_SYMBOL if runner.format == fmts.PTE.name else counting.CALL_SYMBOL
    return replace(runner, argv=[*counting.callgrind_argv(symbol, f"{prefix}.%p"),
                                 *runner.argv])


def read_counts(workdir: str, out_prefix: str, ids: list[str], iterations: int
                ) -> dict[str, dict[str, list[int]]]:
    """Per artifact id, its counted iterations' events, from the newest runner process's dumps
    (a block rerun after a fault leaves the earlier process's dumps, under another pid)."""
    folder = Path(workdir)
    groups: dict[str, list[Path]] = {}
    for p in folder.iterdir():
        if p.name.startswith(out_prefix + "."):
            groups.setdefault(p.name.split(".")[1], []).append(p)
    if not groups:
        raise counting.CountingError(f"callgrind wrote no dump for {', '.join(ids)}; its "
                                     f"output was expected in {workdir}")
    pid = max(groups, key=lambda k: max(f.stat().st_mtime for f in groups[k]))
    dumps = counting.dump_files(folder, f"{out_prefix}.{pid}")
    expected = len(ids) * (WARMUP + iterations)
    if len(dumps) != expected:
        raise counting.CountingError(
            f"callgrind wrote {len(dumps)} dumps for {', '.join(ids)}, expected {expected} (one "
            f"per iteration): the runner's timed function was not found, or it ran another "
            f"number of times")
    counted = [counting.read_dump(p.read_text()) for p in dumps[len(ids) * WARMUP:]]
    for files in groups.values():            # read: the session folder stays small
        for p in files:
            p.unlink()
    return {art: {event: [c[event] for c in counted[i * iterations:(i + 1) * iterations]]
                  for event in counting.EVENTS}
            for i, art in enumerate(ids)}


def out_prefix(index: int) -> str:
    """The dump files' prefix of block ``index``; valgrind adds the pid (%p) and the dump
    number."""
    return f"callgrind-{index}"
