"""Where the time goes: each block of the deploy-form model alone, in ONNX Runtime and XNNPACK.

Every block (stem conv, inverted residual, transformer block, fusion/injection block, resize,
classifier) is exported on its own at the shapes it sees inside the model, once per format with
that format's runtime rewrites, and timed on one pinned core with one thread by the bench's own
runners: ONNX Runtime (all optimisations) and the native ExecuTorch/XNNPACK runner. Each row has the
block's FLOPs and the throughput each runtime reached, so memory-bound blocks stand out against
the SGEMM peak. What the blocks leave out (glue between them) is the whole model minus their sum.

Not a timed test: a script that prints numbers.

    python benchmarks/layer_profile.py --model seaformer-t --json profile.json
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from seaformer_deploy.export import rewrites
from seaformer_deploy.export.fold import fold_batchnorm
from seaformer_deploy.export.onnx_export import simplify
from seaformer_deploy.export.pte_export import export_pte
from seaformer_deploy.export.pte_layout import NHWCInterface, inverse_transposes_cancelled, to_nhwc
from seaformer_deploy.export.samples import sample_batch
from seaformer_deploy.export.weights import synthetic_model
from seaformer_deploy.models.layers import InvertedResidual, Resize
from seaformer_deploy.models.seaformer import Block, FusionBlock
from seaformer_deploy.models.seaformer_pp import UpsampleModule
from seaformer_deploy.models.topformer import InjectionMultiSum, PyramidPoolAgg, TopBlock
from seaformer_deploy.models.topformer_deploy import FixedPyramidPool
from seaformer_deploy.quiet import exporters_quieted, quiet_third_party_logs
from seaformer_deploy.runners.native import build_runner
from seaformer_deploy.runners.plan import PlannedModel, Protocol

from fast_artifacts import bench_core, run_plan     # this folder: the scripts share them

# Module types profiled as one block (nothing inside a block is profiled again).
BLOCKS = (InvertedResidual, Block, TopBlock, FusionBlock, InjectionMultiSum, UpsampleModule,
          PyramidPoolAgg, FixedPyramidPool, Resize, rewrites.MatmulResize,
          rewrites.PaddedConv)
# Blocks found by name: the stem conv and the heads' last two layers.
NAMED = ("stem_block", "stem", "linear_fuse", "conv_seg")


def blocks(model: nn.Module, calls: dict[str, tuple]) -> list[str]:
    """Names of the profiled blocks that ran, in call order, outermost only."""
    chosen: list[str] = []
    for name in calls:                                   # dicts keep the call order
        module = model.get_submodule(name)
        if not (isinstance(module, BLOCKS) or name.rpartition(".")[2] in NAMED):
            continue
        if not any(name.startswith(outer + ".") for outer in chosen):
            chosen.append(name)
    return chosen


def export_block(module: nn.Module, args: tuple, fmt: str, stem: Path) -> PlannedModel:
    """Write ``module`` as a ``fmt`` artifact and its tensor inputs as raw files; the plan
    entry that runs it. The .pte is the export's default form: 4-D tensors in and out as
    logical NHWC, with XNNPACK's cancelling transposes removed (export/pte_layout.py)."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]   # a resize's size is a constant
    if fmt == "onnx":
        buffer = io.BytesIO()
        with exporters_quieted():
            torch.onnx.export(module, args, buffer, dynamo=True, opset_version=18,
                              external_data=False, verbose=False)
        data = simplify(onnx.load_from_string(buffer.getvalue())).SerializeToString()
    else:
        tensors = [to_nhwc(t) for t in tensors]
        with inverse_transposes_cancelled():
            data, _ = export_pte(NHWCInterface(_TensorsOnly(module, args)).eval(), tensors)
    path = stem.with_suffix(f".{fmt}")
    path.write_bytes(data)
    inputs = []
    for i, t in enumerate(tensors):
        inputs.append(str(stem.with_name(f"{stem.name}.{fmt}.in{i}.bin")))
        t.contiguous().numpy().tofile(inputs[-1])
    return PlannedModel(path.name, str(path), tuple(inputs))


class _TensorsOnly(nn.Module):
    """``module`` called with ``args``' constants (a resize's size) in place: it takes only the
    tensors, as the NHWC interface passes them."""

    def __init__(self, module: nn.Module, args: tuple) -> None:
        super().__init__()
        self.module, self.args = module, args

    def forward(self, *tensors: torch.Tensor):
        it = iter(tensors)
        return self.module(*(next(it) if isinstance(a, torch.Tensor) else a
                             for a in self.args))


def gflop(module: nn.Module, args: tuple) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(*args)
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="seaformer-t")
    parser.add_argument("--input-size", default="512x512")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--limit", type=int, help="profile only the first N blocks (all are "
                                                   "still listed, as found)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    quiet_third_party_logs()
    h, w = map(int, args.input_size.split("x"))
    core = bench_core()
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)

    image = sample_batch(h, w, 1)
    deploy = fold_batchnorm(synthetic_model(args.model, (h, w)))
    rewrites.deploy_form(deploy, image)
    forms = {}
    for fmt in ("onnx", "pte"):
        forms[fmt] = copy.deepcopy(deploy)
        rewrites.runtime_form(forms[fmt], image, fmt)
    calls = {fmt: rewrites.call_arguments(m, image) for fmt, m in forms.items()}
    found = blocks(forms["pte"], calls["pte"])               # the same names in both forms
    names = found[:args.limit] if args.limit else found
    plans: dict[str, list[PlannedModel]] = {"onnx": [], "pte": []}
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        work = Path(tmp)
        for fmt in plans:
            plans[fmt].append(export_block(forms[fmt], (image,), fmt, work / "whole"))
            for i, name in enumerate(names):
                plans[fmt].append(export_block(forms[fmt].get_submodule(name),
                                               calls[fmt][name], fmt, work / f"block{i}"))
        protocol = Protocol(core=core, warmup_iterations=10, warmup_seconds=0.3,
                            iterations=args.iterations, min_seconds=0.0, rounds=1)
        medians = {}
        for fmt, cmd in (("onnx", [sys.executable, "-m", "seaformer_deploy.runners.onnx_runner"]),
                         ("pte", [str(build_runner("host").binary)])):
            samples = run_plan(cmd, plans[fmt], protocol, work)
            medians[fmt] = [float(np.median(samples[m.id])) for m in plans[fmt]]
    whole = {fmt: values[0] for fmt, values in medians.items()}
    rows = []
    for i, name in enumerate(names):
        module, inputs = forms["pte"].get_submodule(name), calls["pte"][name]
        rows.append({"block": name, "input": list(inputs[0].shape),
                     "gflop": gflop(module, inputs), "onnx_ms": medians["onnx"][i + 1],
                     "pte_ms": medians["pte"][i + 1]})
        print(f"{name:40s} {str(rows[-1]['input']):20s} {rows[-1]['gflop'] * 1e3:7.1f} MFLOP"
              f"  onnx {rows[-1]['onnx_ms']:6.3f}  pte {rows[-1]['pte_ms']:6.3f} ms")
    total = {fmt: sum(r[f"{fmt}_ms"] for r in rows) for fmt in ("onnx", "pte")}
    print(f"\n{args.model} {h}x{w}, cpu{core}, 1 thread, median of {args.iterations}")
    print(f"{'':40s} {'onnx ms':>9s} {'pte ms':>9s}")
    print(f"{f'blocks ({len(names)} of {len(found)})':40s} {total['onnx']:9.3f} "
          f"{total['pte']:9.3f}")
    print(f"{'whole model':40s} {whole['onnx']:9.3f} {whole['pte']:9.3f}")
    print(f"{'glue (whole - blocks)':40s} {whole['onnx'] - total['onnx']:9.3f} "
          f"{whole['pte'] - total['pte']:9.3f}")
    print("\nlargest XNNPACK-minus-ONNX-Runtime differences:")
    for r in sorted(rows, key=lambda r: r["onnx_ms"] - r["pte_ms"])[:6]:
        gf = r["gflop"]
        print(f"  {r['block']:40s} pte {r['pte_ms']:6.3f} ({gf / r['pte_ms'] * 1e3:5.1f} GFLOP/s)"
              f"  onnx {r['onnx_ms']:6.3f} ({gf / r['onnx_ms'] * 1e3:5.1f} GFLOP/s)")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "input_size": [h, w], "core": core,
                                         "iterations": args.iterations, "whole_ms": whole,
                                         "found": found, "blocks": rows}, indent=2))


if __name__ == "__main__":
    main()
