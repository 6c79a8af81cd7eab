"""The native ExecuTorch runner and the ONNX Runtime runner: one contract, pinned, correct."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from seaformer_deploy.devices import LocalDevice
from seaformer_deploy.export.parity import device_parity
from seaformer_deploy.runners.native import build_runner
from seaformer_deploy.runners.plan import (PlannedModel, Protocol, load_result, plan_text,
                                           read_output)

QUICK = Protocol(warmup_iterations=3, warmup_seconds=0.0, iterations=12, min_seconds=0.0,
                 rounds=3)


@pytest.fixture(scope="session")
def host_runner():
    return build_runner("host")


@pytest.fixture(scope="session")
def core():
    device = LocalDevice()
    return device.choose_core(device.probe()).core


def _plan(tmp_path, export, names, core, protocol=QUICK):
    folder = export.folder
    arts = {a["path"]: a for a in export.manifest.to_dict()["artifacts"]}
    models = []
    for name in names:
        out = tmp_path / "out" / name
        out.mkdir(parents=True)
        inputs = tuple(str(folder / t["file"]) for t in arts[name]["inputs"])
        models.append(PlannedModel(name, str(folder / name), inputs, str(out)))
    plan = tmp_path / "plan.txt"
    plan.write_text(plan_text(protocol.__class__(**{**protocol.__dict__, "core": core}), models))
    return plan, arts


def _run(cmd, tmp_path):
    result = tmp_path / "result.json"
    proc = subprocess.run([*cmd, str(tmp_path / "plan.txt"), str(result)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return load_result(result)


def _outputs(model_run):
    return [read_output(o) for o in model_run.outputs]


PTE = ["model.fp32.pte", "context.fp32.pte", "model.fp16.pte", "head.fp16.pte"]  # channels-last
ONNX = ["model.fp32.onnx", "stem.fp16.onnx", "context.fp32.onnx"]


@pytest.mark.parametrize("kind", ["native", "onnx"])
def test_runner_pins_measures_and_matches_pytorch(kind, tmp_path, small_export, host_runner,
                                                  core):
    names = PTE if kind == "native" else ONNX
    _plan(tmp_path, small_export, names, core)
    cmd = ([str(host_runner.binary)] if kind == "native"
           else [sys.executable, "-m", "seaformer_deploy.runners.onnx_runner"])
    result = _run(cmd, tmp_path)
    assert result.pinned and result.requested_core == core and result.threads == 1
    arts = {a["path"]: a for a in small_export.manifest.to_dict()["artifacts"]}
    for name in names:
        run = result.models[name]
        assert len(run.samples_ms) >= QUICK.iterations and np.all(run.samples_ms > 0)
        assert set(run.cpus.tolist()) == {core}, "an iteration ran on another CPU"
        assert sorted(set(run.rounds.tolist())) == list(range(QUICK.rounds))
        assert run.warmup_iterations >= QUICK.warmup_iterations and run.load_ms > 0
        parity = device_parity(small_export.manifest.artifact(name), _outputs(run),
                               small_export.folder)
        assert parity.passed, (name, parity.failures)
        expected = [t["dim_order"] for t in arts[name]["outputs"]]
        assert [o["dim_order"] for o in run.outputs] == expected


def test_rounds_interleave_models(tmp_path, small_export, host_runner, core):
    _plan(tmp_path, small_export, ["stem.fp32.pte", "head.fp32.pte"], core)
    result = _run([str(host_runner.binary)], tmp_path)
    for run in result.models.values():
        counts = np.bincount(run.rounds)
        assert len(counts) == QUICK.rounds and counts.min() >= QUICK.iterations // QUICK.rounds


def test_minimum_seconds_extends_the_run(tmp_path, small_export, host_runner, core):
    protocol = Protocol(warmup_iterations=1, warmup_seconds=0.0, iterations=2, min_seconds=0.3,
                        rounds=2)
    _plan(tmp_path, small_export, ["head.fp32.pte"], core, protocol)
    run = _run([str(host_runner.binary)], tmp_path).models["head.fp32.pte"]
    assert run.samples_ms.sum() >= 300 and len(run.samples_ms) > 2


def test_runner_rejects_a_bad_input(tmp_path, small_export, host_runner):
    bad = tmp_path / "short.bin"
    bad.write_bytes(b"\0" * 12)
    (tmp_path / "plan.txt").write_text(plan_text(QUICK, [PlannedModel(
        "m", str(small_export.folder / "model.fp32.pte"), (str(bad),))]))
    proc = subprocess.run([str(host_runner.binary), str(tmp_path / "plan.txt"),
                           str(tmp_path / "r.json")], capture_output=True, text=True)
    assert proc.returncode == 2 and "has 12 bytes, the program expects" in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_build_is_cached(host_runner):
    again = build_runner("host")
    assert again.binary == host_runner.binary and again.digest == host_runner.digest
    assert {p.name for p in again.libraries} >= {"libexecutorch.so",
                                                 "libexecutorch_backend_xnnpack.so"}


def test_read_output_undoes_the_memory_order(tmp_path):
    logical = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    path = tmp_path / "out.bin"
    np.ascontiguousarray(logical.transpose(0, 2, 3, 1)).tofile(path)
    record = {"path": str(path), "dtype": "float32", "shape": [2, 3, 4, 5],
              "dim_order": [0, 2, 3, 1]}
    assert np.array_equal(read_output(record), logical)
