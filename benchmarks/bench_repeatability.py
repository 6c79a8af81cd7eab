"""How repeatable is `seaformer-deploy bench`? Run it N times and report the CV of the medians.

Each run is a complete bench (its own processes, warm-up, interleaved rounds); the spread of an
artifact's median across runs is what a user comparing two reports has to live with. Not a
timed test: a script that prints numbers.

    python benchmarks/bench_repeatability.py --artifacts models/seaformer-t_512x512_logits
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from seaformer_deploy.bench.run import BenchOptions, bench
from seaformer_deploy.reports import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True, help="an export folder")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--formats", default="pte,onnx")
    parser.add_argument("--precisions", default="fp32")
    parser.add_argument("--precision", type=float, default=0.01, help="as `bench --precision`")
    parser.add_argument("--max-seconds", type=float, default=240.0,
                        help="as `bench --max-seconds`")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    medians: dict[str, list[float]] = {}
    reached: dict[str, list[float]] = {}
    wandered: dict[str, list[float]] = {}      # each run's speed wander (noise.Wander.level)
    ratios: dict[str, list[float]] = {}
    diagnoses, seconds = [], []
    for i in range(args.runs):
        report = build_report(bench(BenchOptions(
            args.artifacts, formats=tuple(args.formats.split(",")),
            precisions=tuple(args.precisions.split(",")), precision=args.precision,
            max_seconds=args.max_seconds)))
        for a in report["artifacts"]:
            medians.setdefault(a["path"], []).append(a["stats"]["median"])
            reached.setdefault(a["path"], []).append(a["stats"]["precision"])
            wandered.setdefault(a["path"], []).append(a["stats"]["wander"]["level"])
        diagnoses.append(report["noise"]["diagnosis"])
        seconds.append(report["wall_seconds"])
        for c in report["components"]:
            ratios.setdefault(f"{c['format']} {c['precision']}", []).append(c["sum_over_whole"])
        print(f"run {i + 1}/{args.runs} done in {seconds[-1]:.0f} s; noise: {diagnoses[-1]}",
              flush=True)
    rows = {}
    print(f"\n{'artifact':20s} {'mean of medians':>16s} {'CV across runs':>15s} "
          f"{'CI half-width reached (per run)':>32s}   wander (per run)")
    for path, values in medians.items():
        v = np.asarray(values)
        rows[path] = {"medians_ms": values, "cv": float(v.std(ddof=1) / v.mean()),
                      "precision": reached[path], "wander": wandered[path]}
        widths = " ".join(f"{100 * w:.2f}" if w is not None else "-" for w in reached[path])
        moved = " ".join(f"{100 * w:.2f}" for w in wandered[path])
        print(f"{path:20s} {v.mean():13.3f} ms {100 * rows[path]['cv']:14.2f} %   {widths} %"
              f"   {moved} %")
    for group, values in ratios.items():
        print(f"sum/whole {group}: {', '.join(f'{r:.3f}' for r in values)}")
    if args.json:
        args.json.write_text(json.dumps({"runs": args.runs, "precision": args.precision,
                                         "max_seconds": args.max_seconds, "artifacts": rows,
                                         "sum_over_whole": ratios, "wall_seconds": seconds,
                                         "noise": diagnoses}, indent=2))


if __name__ == "__main__":
    main()
