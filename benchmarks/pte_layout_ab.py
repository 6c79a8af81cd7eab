"""The default .pte layout (--pte-layout nhwc, logical NHWC edges) against --pte-layout nchw.

One model, FP32, whole model only; the native runner on one pinned core (also under taskset),
one thread; both programs interleaved round by round in each runner process, the order
alternating between processes. Prints per-round median ratios nchw / nhwc with a bootstrap
95 % CI. Not a timed test: a script that prints numbers (docs/pte-layout.md).

    python benchmarks/pte_layout_ab.py --input-size 512x512 --core 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from seaformer_deploy.export.pipeline import ExportOptions, export
from seaformer_deploy.runners.native import build_runner
from seaformer_deploy.runners.plan import PlannedModel, Protocol, load_result, plan_text

LAYOUTS = ("nhwc", "nchw")


def exported(args: argparse.Namespace, size: tuple[int, int]) -> dict[str, PlannedModel]:
    """One export per layout, each in its own root: the folder name does not say the layout."""
    models = {}
    for layout in LAYOUTS:
        result = export(ExportOptions(model=args.model, input_size=size, formats=("pte",),
                                      precisions=("fp32",), components=False,
                                      out_root=args.models_dir / layout, pte_layout=layout))
        (art,) = result.manifest["artifacts"]
        print(f"{layout}: input {art['inputs'][0]['shape']}, "
              f"{art['executorch']['partitions']} partition(s), cancelled transposes "
              f"{art['executorch'].get('cancelled_transposes')}", flush=True)
        models[layout] = PlannedModel(layout, str(result.folder / art["path"]),
                                      (str(result.folder / art["inputs"][0]["file"]),))
    return models


def per_round_medians(args: argparse.Namespace, models: dict[str, PlannedModel],
                      work: Path) -> dict[str, list[float]]:
    runner = build_runner("host").binary
    protocol = Protocol(core=args.core, warmup_iterations=5, warmup_seconds=0.0,
                        iterations=args.rounds * args.iterations, min_seconds=0.0,
                        rounds=args.rounds)
    medians: dict[str, list[float]] = {k: [] for k in LAYOUTS}
    for p in range(args.processes):
        order = LAYOUTS if p % 2 == 0 else LAYOUTS[::-1]
        (work / "plan.txt").write_text(plan_text(protocol, [models[k] for k in order]))
        proc = subprocess.run(["taskset", "-c", str(args.core), str(runner),
                               str(work / "plan.txt"), str(work / "result.json")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        result = load_result(work / "result.json")
        for k in order:
            run = result.models[k]
            medians[k] += [float(np.median(run.samples_ms[run.rounds == r]))
                           for r in range(args.rounds)]
        print(f"process {p + 1}/{args.processes} done", flush=True)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="seaformer-t")
    parser.add_argument("--input-size", default="512x512")
    parser.add_argument("--core", type=int, default=1)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=30, help="per runner process")
    parser.add_argument("--iterations", type=int, default=3, help="per program and round")
    parser.add_argument("--models-dir", type=Path, default=Path("models/pte_layout_ab"))
    args = parser.parse_args()
    h, w = map(int, args.input_size.split("x"))
    models = exported(args, (h, w))
    with tempfile.TemporaryDirectory() as tmp:
        medians = per_round_medians(args, models, Path(tmp))
    ratio = np.array(medians["nchw"]) / np.array(medians["nhwc"])
    rng = np.random.default_rng(0)
    boot = [np.median(rng.choice(ratio, ratio.size)) for _ in range(5000)]
    print(json.dumps({"model": args.model, "input_size": [h, w], "core": args.core,
                      "median_ms": {k: float(np.median(v)) for k, v in medians.items()},
                      "nchw_over_nhwc": float(np.median(ratio)),
                      "ci95": [float(np.percentile(boot, 2.5)),
                               float(np.percentile(boot, 97.5))],
                      "rounds": int(ratio.size)}, indent=1))


if __name__ == "__main__":
    main()
