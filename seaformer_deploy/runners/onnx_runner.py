"""The ONNX Runtime runner: the native runner's contract (plan in, JSON out) for .onnx artifacts.

Run as ``python -m seaformer_deploy.runners.onnx_runner PLAN_FILE RESULT_JSON``. One intra-op and
one inter-op thread, sequential execution, pinned with ``sched_setaffinity`` before the sessions
exist. Inputs and outputs are bound once (I/O binding), so an iteration times ``run`` alone.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
           "tensor(int64)": np.int64, "tensor(int32)": np.int32}
_libc = ctypes.CDLL(None, use_errno=True)
_CALLBACK = ctypes.CFUNCTYPE(None)


def read_plan(path: Path) -> dict:
    plan = {"core": -1, "threads": 1, "warmup": (10, 0.5), "timed": (50, 2.0), "rounds": 5,
            "cooldown": 0.0, "progress": None, "count": None, "models": []}
    for line in Path(path).read_text().splitlines():
        key, _, rest = line.strip().partition(" ")
        if not key or key.startswith("#"):
            continue
        if key in ("core", "threads", "rounds"):
            plan[key] = int(rest)
        elif key in ("warmup", "timed"):
            n, seconds = rest.split()
            plan[key] = (int(n), float(seconds))
        elif key == "cooldown":
            plan[key] = float(rest)
        elif key in ("progress", "count"):
            plan[key] = rest
        elif key == "model":
            plan["models"].append({"id": rest, "inputs": [], "outputs": None})
        elif key in ("path", "outputs"):
            plan["models"][-1][key] = rest
        elif key == "input":
            plan["models"][-1]["inputs"].append(rest)
        else:
            raise SystemExit(f"onnx_runner: unknown plan line: {line}")
    return plan


class Model:
    def __init__(self, spec: dict, threads: int, counter: ctypes.CDLL | None = None) -> None:
        import onnxruntime as ort

        self.spec = spec
        started = time.perf_counter()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(spec["path"], options,
                                            providers=["CPUExecutionProvider"])
        self.binding = self.session.io_binding()
        self.inputs = []
        for meta, file in zip(self.session.get_inputs(), spec["inputs"], strict=True):
            array = np.fromfile(file, dtype=_DTYPES[meta.type]).reshape(meta.shape)
            self.inputs.append(array)
            self.binding.bind_cpu_input(meta.name, array)
        for meta in self.session.get_outputs():
            self.binding.bind_output(meta.name, "cpu")
        self.load_ms = (time.perf_counter() - started) * 1e3
        self.rss_after_load_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.samples, self.cpus, self.rounds = [], [], []
        self.warmup_iterations, self.warmup_seconds, self.timed = 0, 0.0, 0.0
        self.counter = counter
        # Instruction mode: every iteration runs inside the counting library's one function,
        # which callgrind's --toggle-collect counts (runners/counting.py).
        self.callback = _CALLBACK(lambda: self.session.run_with_iobinding(self.binding))

    def run_once(self) -> int:
        started = time.perf_counter_ns()
        if self.counter is not None:
            self.counter.seaformer_timed_call(self.callback)
        else:
            self.session.run_with_iobinding(self.binding)
        return time.perf_counter_ns() - started


def _warm_up(model: Model, iterations: int, seconds: float) -> None:
    started = time.perf_counter()
    while model.warmup_iterations < iterations or time.perf_counter() - started < seconds:
        model.run_once()
        model.warmup_iterations += 1
    model.warmup_seconds = time.perf_counter() - started


class Progress:
    """Which model the runner is in, appended to the plan's progress file (see runner.cpp)."""

    def __init__(self, path: str | None) -> None:
        self.file = open(path, "a") if path else None

    def mark(self, phase: str, model_id: str) -> None:
        if self.file:
            self.file.write(f"{phase} {model_id}\n")
            self.file.flush()


def _measure(models: list[Model], plan: dict, progress: Progress) -> None:
    """Round-robin blocks until each model has its iterations and seconds (as the C++ runner)."""
    iterations, min_seconds = plan["timed"]
    block = max(1, -(-iterations // plan["rounds"]))

    def done(m: Model) -> bool:
        return len(m.samples) >= iterations and m.timed >= min_seconds

    round_index = 0
    while True:
        for m in models:
            if round_index >= plan["rounds"] and done(m):
                continue
            n = block
            if round_index >= plan["rounds"] and m.samples:
                need = (min_seconds - m.timed) / (m.timed / len(m.samples))
                n = max(1, min(block, int(np.ceil(need))))
            progress.mark("timing", m.spec["id"])
            for _ in range(n):
                ns = m.run_once()
                m.samples.append(ns)
                m.cpus.append(_libc.sched_getcpu())
                m.rounds.append(round_index)
                m.timed += ns * 1e-9
            if plan["cooldown"] > 0:
                time.sleep(plan["cooldown"])
        round_index += 1
        if round_index >= plan["rounds"] and all(done(m) for m in models):
            return


def _outputs(model: Model, progress: Progress) -> list[dict]:
    folder = model.spec.get("outputs")
    if not folder:
        return []
    progress.mark("outputs", model.spec["id"])
    model.session.run_with_iobinding(model.binding)
    records = []
    for i, array in enumerate(model.binding.copy_outputs_to_cpu()):
        path = os.path.join(folder, f"output{i}.bin")
        np.ascontiguousarray(array).tofile(path)
        records.append({"path": path, "dtype": str(array.dtype), "shape": list(array.shape),
                        "dim_order": list(range(array.ndim))})
    return records


def main(argv: list[str]) -> int:
    if argv == ["--version"]:
        import onnxruntime as ort

        print(json.dumps({"runner": "seaformer-onnx-runner", "runtime": "onnxruntime",
                          "runtime_version": ort.__version__}))
        return 0
    if len(argv) != 2:
        print("usage: onnx_runner PLAN_FILE RESULT_JSON | --version", file=sys.stderr)
        return 2
    import onnxruntime as ort

    wall = time.perf_counter()
    plan = read_plan(Path(argv[0]))
    pinned, pin_error = False, None
    if plan["core"] >= 0:
        try:
            os.sched_setaffinity(0, {plan["core"]})
            pinned = True
        except OSError as exc:
            pin_error = str(exc)
    progress = Progress(plan["progress"])
    counter = None
    if plan["count"]:
        import gc

        gc.disable()                  # a collection inside an iteration would be counted
        counter = ctypes.CDLL(plan["count"])
        counter.seaformer_timed_call.argtypes = [_CALLBACK]
    models = []
    for spec in plan["models"]:
        progress.mark("load", spec["id"])
        models.append(Model(spec, plan["threads"], counter))
    for m in models:
        progress.mark("warmup", m.spec["id"])
        _warm_up(m, *plan["warmup"])
    _measure(models, plan, progress)
    result = {
        "runner": "seaformer-onnx-runner", "runtime": "onnxruntime",
        "runtime_version": ort.__version__, "pid": os.getpid(),
        "requested_core": plan["core"], "pinned": pinned, "pin_error": pin_error,
        "threads": plan["threads"], "rounds": plan["rounds"],
        "models": [{"id": m.spec["id"], "path": m.spec["path"], "load_ms": m.load_ms,
                    "rss_after_load_kb": m.rss_after_load_kb,
                    "warmup_iterations": m.warmup_iterations,
                    "warmup_seconds": m.warmup_seconds, "samples_ns": m.samples,
                    "cpus": m.cpus, "rounds": m.rounds, "outputs": _outputs(m, progress)}
                   for m in models],
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "wall_seconds": time.perf_counter() - wall,
    }
    tmp = Path(argv[1] + ".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
