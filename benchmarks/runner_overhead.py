"""How much the native runner's bookkeeping adds to the latency it reports.

Runs, alternately on the same pinned core, our runner (per-iteration clocks, CPU id, rounds) and a
bare loop around the same .pte (one clock pair around N executions), several times, and prints
the overhead of the runner's mean and median over the bare loop's mean. Not a timed test:
a script that prints numbers.

    python benchmarks/runner_overhead.py --artifacts models/seaformer-t_512x512_logits
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from seaformer_deploy.devices import LocalDevice
from seaformer_deploy.runners.native import build_runner, host_prefix
from seaformer_deploy.runners.plan import PlannedModel, Protocol, load_result, plan_text

HERE = Path(__file__).resolve().parent


def build_bare_loop(work: Path) -> Path:
    build = work / "bare-build"
    subprocess.run(["cmake", "-S", str(HERE / "bare_loop"), "-B", str(build),
                    "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_PREFIX_PATH={host_prefix()}"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    return build / "bare-loop"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True, help="an export folder")
    parser.add_argument("--artifact", default="model.fp32.pte")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    manifest = json.loads((args.artifacts / "manifest.json").read_text())
    art = next(a for a in manifest["artifacts"] if a["path"] == args.artifact)
    inputs = [str(args.artifacts / t["file"]) for t in art["inputs"]]   # in its layout
    if len(inputs) != 1:
        raise SystemExit("the bare loop takes single-input artifacts (the model or the stem)")
    device = LocalDevice()
    core = device.choose_core(device.probe()).core
    runner = build_runner("host")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bare = build_bare_loop(work)
        plan = work / "plan.txt"
        plan.write_text(plan_text(Protocol(core=core, warmup_iterations=20, warmup_seconds=0.0,
                                           iterations=args.iterations, min_seconds=0.0, rounds=1),
                                  [PlannedModel(art["path"], str(args.artifacts / art["path"]),
                                                tuple(inputs))]))
        bare_means, runner_means, runner_medians = [], [], []
        for _ in range(args.repeats):
            out = subprocess.run([str(bare), str(args.artifacts / art["path"]), inputs[0],
                                  str(args.iterations), str(core)], check=True,
                                 capture_output=True, text=True).stdout
            bare_means.append(json.loads(out)["execute_ms"])
            subprocess.run([str(runner.binary), str(plan), str(work / "r.json")], check=True,
                           capture_output=True)
            samples = load_result(work / "r.json").models[art["path"]].samples_ms
            runner_means.append(float(np.mean(samples)))
            runner_medians.append(float(np.median(samples)))
    bare = statistics.median(bare_means)
    result = {"artifact": art["path"], "core": core, "iterations": args.iterations,
              "repeats": args.repeats, "bare_mean_ms": bare,
              "runner_mean_ms": statistics.median(runner_means),
              "runner_median_ms": statistics.median(runner_medians)}
    result["overhead_mean_pct"] = 100 * (result["runner_mean_ms"] / bare - 1)
    result["overhead_median_pct"] = 100 * (result["runner_median_ms"] / bare - 1)
    print(f"{art['path']} on cpu{core}, {args.repeats} alternating repeats of "
          f"{args.iterations} iterations")
    print(f"  bare loop mean     {bare:8.3f} ms")
    print(f"  runner mean        {result['runner_mean_ms']:8.3f} ms  "
          f"({result['overhead_mean_pct']:+.2f} %)")
    print(f"  runner median      {result['runner_median_ms']:8.3f} ms  "
          f"({result['overhead_median_pct']:+.2f} %)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
