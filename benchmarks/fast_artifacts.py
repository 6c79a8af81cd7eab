"""Our artifacts against the official export path, a naive export, eager and the roofline.

On one pinned core with one thread, in interleaved rounds, for one model and input size:

  eager         PyTorch eager, the reference model (BatchNorm not folded)
  official      the reference model through the TorchScript-based torch.onnx.export at opset 11
                (the official code base's path), in ONNX Runtime with all optimisations
  ours.onnx     our ONNX artifact (folded, deploy-form rewrites), same ONNX Runtime settings
  naive.pte     the reference model folded and lowered to XNNPACK, no rewrites, NCHW I/O
  ours.pte      our .pte artifact (deploy form, channels-last I/O), in the native runner
  int8.onnx     our INT8 ONNX artifact (QDQ), same ONNX Runtime settings
  int8.pte      our INT8 .pte artifact (PT2E, XNNPACK), in the native runner
  floor         model FLOPs / single-core SGEMM throughput measured in this run (the best of
                XNNPACK's GEMM, through the native runner, and NumPy's BLAS)

Prints medians and ratios and writes them as JSON. Not a timed test: a script that prints numbers.

    python benchmarks/fast_artifacts.py --model seaformer-t --json fast.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from seaformer_deploy.devices import LocalDevice
from seaformer_deploy.export.pipeline import ExportOptions, export
from seaformer_deploy.export.pte_export import export_pte
from seaformer_deploy.export.samples import sample_batch
from seaformer_deploy.export.weights import synthetic_model
from seaformer_deploy.models.complexity import analyze
from seaformer_deploy.runners.native import build_runner
from seaformer_deploy.runners.plan import PlannedModel, Protocol, load_result, plan_text
from seaformer_deploy.quiet import quiet_third_party_logs


def official_onnx(model: torch.nn.Module, image: torch.Tensor, path: Path) -> Path:
    """The official code base's export: TorchScript exporter, opset 11, nothing else."""
    torch.onnx.export(model, (image,), str(path), dynamo=False, opset_version=11,
                      input_names=["image"], output_names=["logits"])
    return path


def run_plan(cmd: list[str], models: list[PlannedModel], protocol: Protocol,
             work: Path) -> dict[str, np.ndarray]:
    plan, result = work / "plan.txt", work / "result.json"
    plan.write_text(plan_text(protocol, models))
    proc = subprocess.run([*cmd, str(plan), str(result)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return {k: v.samples_ms for k, v in load_result(result).models.items()}


def sgemm_gflops(runner: Path, core: int, work: Path) -> dict[str, float]:
    """Single-core SGEMM throughput: XNNPACK (a 512->512 1x1 conv on 32x32) and NumPy's BLAS."""
    conv = torch.nn.Conv2d(512, 512, 1, bias=False).eval()
    x = torch.randn(1, 512, 32, 32)
    data, _ = export_pte(conv, [x])
    (work / "gemm.pte").write_bytes(data)
    x.numpy().tofile(work / "gemm.bin")
    samples = run_plan([str(runner)], [PlannedModel("gemm", str(work / "gemm.pte"),
                                                    (str(work / "gemm.bin"),))],
                       Protocol(core=core, warmup_iterations=10, warmup_seconds=0.3,
                                iterations=50, min_seconds=1.0, rounds=1), work)["gemm"]
    flop = 2 * 512 * 512 * 32 * 32
    xnnpack = flop / np.median(samples) / 1e6
    return {"xnnpack": xnnpack, "numpy_blas": blas_gflops(core)}


# In a fresh process pinned before NumPy loads, with one BLAS thread: OpenBLAS starts its worker
# threads at import, and pinning the main thread afterwards leaves them on the other cores.
BLAS_PROBE = """
import time, numpy as np
a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
for _ in range(3):
    a @ a
started = time.perf_counter()
for _ in range(10):
    a @ a
print(10 * 2 * 1024 ** 3 / (time.perf_counter() - started) / 1e9)
"""


def blas_gflops(core: int) -> float:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", BLAS_PROBE], env=env, capture_output=True,
                          text=True, check=True,
                          preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    return float(proc.stdout.strip())


def bench_core() -> int:
    """The core the bench would pin on this machine (the same choice, so the numbers compare)."""
    device = LocalDevice()
    return device.choose_core(device.probe()).core


def eager_block(model: torch.nn.Module, image: torch.Tensor, n: int) -> list[float]:
    out = []
    with torch.inference_mode():
        for _ in range(n):
            started = time.perf_counter_ns()
            model(image)
            out.append((time.perf_counter_ns() - started) / 1e6)
    return out


def int8_parity(manifest) -> dict[str, dict]:
    """The INT8 whole-model artifacts' parity with PyTorch FP32, as the export measured it."""
    out = {}
    for name in ("model.int8.onnx", "model.int8.pte"):
        worst = manifest.artifact(name).parity.worst
        out[name] = {"psnr_db": worst.psnr_db, "label_agreement": worst.label_agreement}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="seaformer-t")
    parser.add_argument("--input-size", default="512x512")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=20, help="per candidate and round")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    quiet_third_party_logs()
    h, w = map(int, args.input_size.split("x"))
    core = bench_core()
    common = dict(model=args.model, input_size=(h, w), out_root=args.models_dir,
                  precisions=("fp32",), components=False)
    ours = export(ExportOptions(**{**common, "precisions": ("fp32", "int8")},
                                formats=("onnx", "pte")))
    naive = export(ExportOptions(**common, formats=("pte",), rewrites=False, pte_layout="nchw"))
    reference = synthetic_model(args.model, (h, w))          # the same weights as the exports
    image = sample_batch(h, w, 1)
    runner = build_runner("host").binary

    torch.set_num_threads(1)
    os.sched_setaffinity(0, {core})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        official = official_onnx(reference, image, work / "official.onnx")
        image.numpy().tofile(work / "image.bin")
        inputs = (str(work / "image.bin"),)
        block = Protocol(core=core, warmup_iterations=10, warmup_seconds=0.5,
                         iterations=args.iterations, min_seconds=0.0, rounds=1)
        onnx_models = [PlannedModel("official", str(official), inputs),
                       PlannedModel("ours.onnx", str(ours.folder / "model.fp32.onnx"), inputs),
                       PlannedModel("int8.onnx", str(ours.folder / "model.int8.onnx"), inputs)]
        pte = ours.manifest.artifact("model.fp32.pte")
        ours_inputs = (str(ours.folder / pte.inputs[0].file),)   # channels-last bytes
        pte_models = [PlannedModel("naive.pte", str(naive.folder / "model.fp32.pte"), inputs),
                      PlannedModel("ours.pte", str(ours.folder / "model.fp32.pte"), ours_inputs),
                      PlannedModel("int8.pte", str(ours.folder / "model.int8.pte"), ours_inputs)]
        samples: dict[str, list[float]] = {}
        eager_block(reference, image, 10)                      # warm-up
        for r in range(args.rounds):
            samples.setdefault("eager", []).extend(eager_block(reference, image, args.iterations))
            for cmd, models in (([sys.executable, "-m", "seaformer_deploy.runners.onnx_runner"],
                                 onnx_models), ([str(runner)], pte_models)):
                for name, values in run_plan(cmd, models, block, work).items():
                    samples.setdefault(name, []).extend(values.tolist())
            print(f"round {r + 1}/{args.rounds}", flush=True)
        gemm = sgemm_gflops(runner, core, work)

    flop = 2 * analyze(reference, h, w).total.macs
    peak = max(gemm.values())
    medians = {k: float(np.median(v)) for k, v in samples.items()}
    medians["floor"] = flop / peak / 1e6
    best = min(medians["ours.onnx"], medians["ours.pte"])
    result = {
        "model": args.model, "input_size": [h, w], "core": core, "rounds": args.rounds,
        "iterations_per_round": args.iterations, "medians_ms": medians,
        "gflop": flop / 1e9, "sgemm_gflops": gemm,
        "ratios": {"official_over_best": medians["official"] / best,
                   "naive_over_ours_pte": medians["naive.pte"] / medians["ours.pte"],
                   "ours_onnx_over_ours_pte": medians["ours.onnx"] / medians["ours.pte"],
                   "ours_pte_over_floor": medians["ours.pte"] / medians["floor"],
                   "ours_pte_over_int8_pte": medians["ours.pte"] / medians["int8.pte"],
                   "ours_onnx_over_int8_onnx": medians["ours.onnx"] / medians["int8.onnx"],
                   "official_over_int8_pte": medians["official"] / medians["int8.pte"]},
        "int8_parity": int8_parity(ours.manifest),
        "ours_pte_delegation": {"partitions": pte.executorch["partitions"],
                                "outside": pte.non_delegated_ops()},
        "naive_pte_partitions": naive.manifest.artifacts[0].executorch["partitions"],
        "rewrites": ours.manifest.deploy_form["rewrites"],
    }
    print(f"\n{args.model} {h}x{w} FP32, cpu{core}, 1 thread, {args.rounds} rounds x "
          f"{args.iterations} iterations ({flop / 1e9:.3f} GFLOP; SGEMM peak {peak:.0f} GFLOP/s)")
    for name in ("eager", "official", "ours.onnx", "naive.pte", "ours.pte", "int8.onnx",
                 "int8.pte", "floor"):
        print(f"  {name:10s} {medians[name]:8.3f} ms")
    for name, value in result["ratios"].items():
        print(f"  {name:26s} {value:6.2f}x")
    print(f"  ours.pte: {pte.executorch['partitions']} XNNPACK partition(s), outside: "
          f"{pte.non_delegated_ops() or 'nothing'}; naive.pte: "
          f"{result['naive_pte_partitions']} partitions")
    for name, check in result["int8_parity"].items():
        print(f"  {name}: {check['psnr_db']:.1f} dB, labels {check['label_agreement']:.2f} % "
              f"vs PyTorch FP32 on the sample images")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
