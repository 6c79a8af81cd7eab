"""Where an export's time goes: a wall-clock breakdown per step, kept in the manifest.

The artifacts' own export and check seconds are summed per format and precision; they run in
worker processes side by side, so their sum is CPU time and can exceed the step's wall time.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from collections.abc import Iterator

from .records import Artifact


class Stopwatch:
    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.steps[name] = round(self.steps.get(name, 0.0) + time.perf_counter() - started,
                                     2)

    def record(self, artifacts: list[Artifact], workers: int) -> dict:
        per_kind: dict[str, dict[str, float]] = {}
        for a in artifacts:
            kind = per_kind.setdefault(f"{a.format} {a.precision}", {"export": 0.0, "check": 0.0})
            kind["export"] = round(kind["export"] + a.export_seconds, 2)
            kind["check"] = round(kind["check"] + (a.check_seconds or 0.0), 2)
        return {"steps": dict(self.steps), "artifacts": per_kind, "workers": workers}


def breakdown_lines(timings: dict, total: float) -> list[str]:
    """The breakdown as text lines, for ``export --verbose``."""
    lines = [f"{name:<22s} {seconds:7.1f} s" for name, seconds in timings["steps"].items()]
    lines.append(f"{'total':<22s} {total:7.1f} s")
    lines.append(f"artifact jobs, CPU seconds over {timings['workers']} workers "
                 f"(export + host-runtime check):")
    lines += [f"  {kind:<20s} {t['export']:7.1f} + {t['check']:5.1f} s"
              for kind, t in timings["artifacts"].items()]
    return lines
