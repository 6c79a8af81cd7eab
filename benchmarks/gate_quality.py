"""How good is the gate on this machine: false-alarm rate, detection rate, seconds per decision.

For one model and size (FP32 .pte, whole model), on one pinned core:

  1. calibrate: export the model with identity work appended (``export --extra-work``), measure
     the cost of one unit of that work in a long A/B run, and export artifacts slower by at
     least the target amounts (default 2 %, 5 %, 10 %; whole units of work); measure each one's
     true slowdown in a long A/B run;
  2. trials, interleaved (A/A, then each slowdown, then the next trial):
       ab       ``gate --ab``: the artifact against itself (A/A) and against each slowed one;
       reports  a fresh bench report per side, gated as two reports (the baseline report is
                benched anew in every trial, so A/A sees real session-to-session variation),
                with the bench's stop-on-precision protocol (--precision, --max-seconds);
       instructions  the same with reports of callgrind counts (bench --metric instructions),
                gated against the 0.5 % minimum effect;
  3. prints, per mode: false alarms among the A/A trials (any REGRESSION), detection rate per
     slowdown (REGRESSION), how many decisions were UNSTABLE, and seconds per decision; writes
     everything as JSON.

Not a timed test: a script that prints numbers.

    python benchmarks/gate_quality.py --trials 20 --json gate_quality.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from seaformer_deploy.bench.run import BenchOptions, bench
from seaformer_deploy.devices import LocalDevice
from seaformer_deploy.export import manifest as mf
from seaformer_deploy.export.pipeline import ExportOptions, export
from seaformer_deploy.gate.ab import ABOptions, gate_ab, run_ab
from seaformer_deploy.gate.compare import Selection, compare_reports
from seaformer_deploy.gate.stats import unpaired_shift
from seaformer_deploy.gate.verdict import INSTRUCTION_EFFECT, REGRESSION, UNSTABLE, Rule, decide
from seaformer_deploy.quiet import quiet_third_party_logs
from seaformer_deploy.reports import build_report
from seaformer_deploy.runners.plan import Protocol

MODEL_ONLY = Selection(formats=("pte",), precisions=("fp32",), units=("model",))


def export_with(args, extra_work: int) -> Path:
    return export(ExportOptions(
        model=args.model, input_size=tuple(args.input_size), formats=("pte",),
        precisions=("fp32",), components=False, extra_work=extra_work,
        out_root=args.models_dir)).folder


def ab_ratio(a: Path, b: Path, blocks: int, rounds: int) -> tuple[float, float, float]:
    """A long A/B run: the paired ratio estimate and its 98 % interval."""
    run = run_ab(ABOptions(a, b, selection=MODEL_ONLY, blocks=blocks, rounds=rounds))
    s = gate_ab(run, Rule()).rows[0].shift
    return s.ratio, s.ci_low, s.ci_high


def calibrate(args, base: Path) -> dict[float, dict]:
    probe = args.probe_work
    ratio, _, _ = ab_ratio(base, export_with(args, probe), 6, 16)
    per_unit = (ratio - 1) / probe
    print(f"calibration: {probe} identity convolutions add {100 * (ratio - 1):.2f} % "
          f"({100 * per_unit:.3f} % each)", flush=True)
    slowed = {}
    for target in args.slowdowns:
        # At least the target: on a machine where one unit costs 2 %, rounding made the "+5 %"
        # artifact +3.8 %, below the gate's 5 % minimum effect, where a PASS is right. Less a
        # twentieth of a unit: a target a hair above whole units does not take one more.
        work = max(1, math.ceil(target / per_unit - 0.05))
        folder = export_with(args, work)
        r, lo, hi = ab_ratio(base, folder, 6, 16)
        slowed[target] = {"folder": folder, "extra_work": work, "measured": r,
                          "measured_ci98": [lo, hi]}
        print(f"  target +{100 * target:.0f} %: {work} convolutions, measured "
              f"{100 * (r - 1):+.2f} % ({100 * (lo - 1):+.2f} .. {100 * (hi - 1):+.2f})",
              flush=True)
    return slowed


def ab_trial(args, base: Path, cand: Path, rule: Rule) -> dict:
    started = time.perf_counter()
    run = run_ab(ABOptions(base, cand, selection=MODEL_ONLY, blocks=args.blocks,
                           rounds=args.rounds, iterations=args.iterations))
    row = gate_ab(run, rule).rows[0]
    return {"verdict": row.verdict, "ratio": row.shift.ratio, "ci": [row.shift.ci_low,
            row.shift.ci_high], "seconds": time.perf_counter() - started}


def bench_report(folder: Path, args) -> tuple[dict, float]:
    """One bench report of the model, with the bench's protocol (stop on --precision) or, in
    instructions mode, its callgrind counts."""
    started = time.perf_counter()
    metric = "instructions" if args.mode_now == "instructions" else "latency"
    run = bench(BenchOptions(folder, formats=("pte",), precisions=("fp32",), parity=False,
                             blocks=1, protocol=Protocol(), precision=args.precision,
                             max_seconds=args.max_seconds, metric=metric,
                             counted_iterations=args.counted_iterations))
    return build_report(run), time.perf_counter() - started


def report_trial(baseline: dict, cand: Path, rule: Rule, args) -> dict:
    report, bench_seconds = bench_report(cand, args)
    started = time.perf_counter()
    row = compare_reports(baseline, report, rule, MODEL_ONLY).rows[0]
    seconds = bench_seconds + time.perf_counter() - started
    trial = {"verdict": row.verdict, "ratio": row.shift.ratio if row.shift else None,
             "ci": [row.shift.ci_low, row.shift.ci_high] if row.shift else None,
             "seconds": seconds}
    if row.shift and row.shift.design == "unpaired":
        # The same two reports under the rank test alone (the rule before the runs' speed
        # wander entered the interval), to compare the two rules on identical data.
        a, b = (np.asarray(_model(r)["samples_ms"]) for r in (baseline, report))
        alone = unpaired_shift(a, b, rule.confidence)
        trial |= {"session_sd": row.shift.session_sd,
                  "iterations_only": {"verdict": decide(alone, rule)[0],
                                      "ci": [alone.ci_low, alone.ci_high]}}
    return trial


def _model(report: dict) -> dict:
    return next(a for a in report["artifacts"] if a["path"] == "model.fp32.pte")


def _model_sha256(folder: Path) -> str:
    manifest = mf.load(folder)
    return manifest.artifact("model.fp32.pte").sha256


def summarize(trials: dict[str, list[dict]]) -> dict:
    out = {}
    for kind, rows in trials.items():
        verdicts = [r["verdict"] for r in rows]
        alone = [r["iterations_only"]["verdict"] for r in rows if "iterations_only" in r]
        out[kind] = {"trials": len(rows), "regression": verdicts.count(REGRESSION),
                     "unstable": verdicts.count(UNSTABLE),
                     **({"iterations_only": {"regression": alone.count(REGRESSION),
                                             "unstable": alone.count(UNSTABLE)}}
                        if alone else {}),
                     "median_ratio": float(np.median([r["ratio"] for r in rows
                                                      if r["ratio"] is not None] or [np.nan])),
                     "seconds_per_decision": float(np.mean([r["seconds"] for r in rows]))}
    return out


def print_table(mode: str, summary: dict, slowed: dict) -> None:
    aa = summary["A/A"]
    print(f"\n{mode}: false alarms {aa['regression']}/{aa['trials']} A/A "
          f"(unstable {aa['unstable']}), {aa['seconds_per_decision']:.1f} s per decision"
          + _alone(aa))
    for target, info in slowed.items():
        s = summary[f"+{100 * target:.0f}%"]
        print(f"  +{100 * target:.0f} % (measured {100 * (info['measured'] - 1):+.2f} %): "
              f"detected {s['regression']}/{s['trials']} "
              f"({100 * s['regression'] / s['trials']:.0f} %), unstable {s['unstable']}, "
              f"median estimate {100 * (s['median_ratio'] - 1):+.2f} %" + _alone(s))


def _alone(summary: dict) -> str:
    alone = summary.get("iterations_only")
    return (f"; rank test alone: {alone['regression']} regressions, {alone['unstable']} "
            f"unstable" if alone else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="seaformer-t")
    parser.add_argument("--input-size", type=int, nargs=2, default=[512, 512])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--slowdowns", type=float, nargs="+", default=[0.02, 0.05, 0.10])
    parser.add_argument("--probe-work", type=int, default=20,
                        help="identity convolutions of the calibration artifact")
    parser.add_argument("--modes", nargs="+", default=["ab", "reports"],
                        help="ab, reports, instructions (reports of callgrind counts)")
    parser.add_argument("--blocks", type=int, default=4, help="A/B: as `gate --blocks`")
    parser.add_argument("--rounds", type=int, default=8, help="A/B: as `gate --rounds`")
    parser.add_argument("--iterations", type=int, default=5, help="A/B: as `gate --iterations`")
    parser.add_argument("--precision", type=float, default=0.01,
                        help="reports: as `bench --precision`")
    parser.add_argument("--max-seconds", type=float, default=240.0,
                        help="reports: as `bench --max-seconds`")
    parser.add_argument("--counted-iterations", type=int, default=3,
                        help="instructions: as `bench --counted-iterations`")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    quiet_third_party_logs()
    rule = Rule()
    base = export_with(args, 0)
    slowed = calibrate(args, base)
    kinds = {"A/A": base} | {f"+{100 * t:.0f}%": s["folder"] for t, s in slowed.items()}
    trials = {mode: {kind: [] for kind in kinds} for mode in args.modes}
    rules = {"ab": rule, "reports": rule, "instructions": Rule(min_effect=INSTRUCTION_EFFECT)}
    for trial in range(args.trials):
        for mode in args.modes:
            if mode == "ab":
                for kind, folder in kinds.items():
                    trials["ab"][kind].append(ab_trial(args, base, folder, rule))
                continue
            args.mode_now = mode
            baseline = bench_report(base, args)[0]
            for kind, folder in kinds.items():
                trials[mode][kind].append(report_trial(baseline, folder, rules[mode], args))
        print(f"trial {trial + 1}/{args.trials}: " + "; ".join(
            f"{mode} " + " ".join(f"{k}={rows[-1]['verdict'][:4]}" for k, rows in t.items())
            for mode, t in trials.items()), flush=True)
    result = {"model": args.model, "input_size": args.input_size, "rule": rule.to_dict(),
              "command": mf.command_line(), "tools": mf.tool_versions(),
              "device": LocalDevice().probe().to_dict(),
              "artifacts": {kind: {"folder": str(folder), "sha256": _model_sha256(folder)}
                            for kind, folder in kinds.items()},
              "ab_protocol": {"blocks": args.blocks, "rounds": args.rounds,
                              "iterations": args.iterations},
              "reports_protocol": {"precision": args.precision, "max_seconds": args.max_seconds},
              "instructions_rule": rules["instructions"].to_dict(),
              "slowdowns": {str(t): {k: v for k, v in s.items() if k != "folder"}
                            for t, s in slowed.items()},
              "summary": {mode: summarize(t) for mode, t in trials.items()},
              "trials": trials}
    for mode in args.modes:
        print_table(mode, result["summary"][mode], slowed)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
