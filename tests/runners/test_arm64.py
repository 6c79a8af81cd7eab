"""The linux-arm64 runner, cross-built, runs real ARM64 code under qemu and matches PyTorch."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from seaformer_deploy.export.parity import device_parity
from seaformer_deploy.runners.native import CROSS_CXX, build_runner
from seaformer_deploy.runners.plan import (PlannedModel, Protocol, load_result, plan_text,
                                           read_output)

QEMU = "qemu-aarch64-static"
SYSROOT = "/usr/aarch64-linux-gnu"
MISSING = [t for t in (CROSS_CXX, QEMU) if shutil.which(t) is None]

# CI installs the cross compiler and qemu and sets this, so a missing tool fails there.
pytestmark = pytest.mark.skipif(
    bool(MISSING) and not os.environ.get("SEAFORMER_REQUIRE_ARM64"),
    reason=f"not installed: {', '.join(MISSING)} (apt-get install g++-aarch64-linux-gnu "
           f"qemu-user-static)")


def test_linux_arm64_runner_under_qemu(tmp_path, small_export):
    build = build_runner("linux-arm64")
    header = subprocess.run(["readelf", "-h", str(build.binary)], capture_output=True,
                            text=True).stdout
    assert "AArch64" in header
    names = ["model.fp32.pte", "model.fp16.pte"]
    arts = {a["path"]: a for a in small_export.manifest.to_dict()["artifacts"]}
    models = []
    for name in names:
        (tmp_path / name).mkdir()
        inputs = tuple(str(small_export.folder / t["file"]) for t in arts[name]["inputs"])
        models.append(PlannedModel(name, str(small_export.folder / name), inputs,
                                   str(tmp_path / name)))
    protocol = Protocol(core=0, warmup_iterations=1, warmup_seconds=0.0, iterations=1,
                        min_seconds=0.0, rounds=1)
    (tmp_path / "plan.txt").write_text(plan_text(protocol, models))
    # Explicit invocation (no binfmt): qemu runs the binary, -L finds the ARM64 libc.
    proc = subprocess.run([QEMU, "-L", SYSROOT, str(build.binary), str(tmp_path / "plan.txt"),
                           str(tmp_path / "result.json")], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = load_result(tmp_path / "result.json")
    for name in names:
        run = result.models[name]
        outputs = [read_output(o) for o in run.outputs]
        parity = device_parity(small_export.manifest.artifact(name), outputs,
                               small_export.folder)
        assert parity.passed, (name, parity.worst, parity.failures)
