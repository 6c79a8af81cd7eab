"""A gate's outputs: the Markdown table (stdout and $GITHUB_STEP_SUMMARY) and the verdict JSON."""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

from ..errors import option
from ..export import manifest as mf
from .compare import GateError, GateResult
from .verdict import EXIT_ERROR, EXIT_PASS, EXIT_REGRESSION, EXIT_UNSTABLE

SCHEMA_NAME = "seaformer-deploy/gate-verdict"
SCHEMA_VERSION = 1
VERDICT = "verdict.json"
MODES = {"reports": "two reports (unpaired: Mann-Whitney U on the raw iterations, the runs' "
                    "speed wander added)",
         "ab": "interleaved A/B (paired rounds: Wilcoxon signed-rank)"}
COUNTED = "instruction counts (callgrind, deterministic: medians compared directly)"
OUTCOMES = {EXIT_PASS: "PASS", EXIT_REGRESSION: "FAIL (regression)",
            EXIT_ERROR: "ERROR (incomparable)", EXIT_UNSTABLE: "UNDECIDED (unstable)"}


def outcome(result: GateResult) -> str:
    code = result.exit_code
    if code == EXIT_REGRESSION and "REGRESSION" not in {r.verdict for r in result.rows}:
        return "FAIL (unstable, --unstable-is-failure)"
    return OUTCOMES[code]


def rule_text(result: GateResult) -> str:
    rule = result.rule
    if result.metric == "instructions":
        return (f"REGRESSION when the candidate's median instructions per iteration exceed the "
                f"baseline's by {rule.min_effect:.1%} or more (callgrind counts: no statistics, "
                f"UNSTABLE when counted iterations differ by over a quarter of that)")
    return (f"REGRESSION when the candidate is slower at one-sided p < {rule.alpha:g} and a "
            f"slowdown of {rule.min_effect:.0%} or more lies inside the "
            f"{rule.confidence:.0%} interval of the latency ratio")


def markdown(result: GateResult) -> str:
    b, c = result.baseline, result.candidate
    counted = result.metric == "instructions"
    mode = COUNTED if counted else MODES[result.mode]
    unit, scale, digits = ("M instr.", 1e-6, 3) if counted else ("ms", 1.0, 3)
    lines = [f"### seaformer-deploy gate: {outcome(result)} (exit {result.exit_code})", "",
             f"{b['model']} {'x'.join(map(str, b['input_size']))} ({b['output']}) on "
             f"{b['device']}, {mode}.  ",
             f"baseline: `{b['source']}`; candidate: `{c['source']}`.  ",
             f"Rule: {rule_text(result)}.", "",
             f"| artifact | baseline {unit} | candidate {unit} | change | interval | p slower | "
             f"n | verdict | reason |",
             "|---|--:|--:|--:|--:|--:|--:|---|---|"]
    for row in result.rows:
        s = row.shift
        if s is None:
            lines.append(f"| {row.artifact} | | | | | | | **{row.verdict}** | {row.reason} |")
            continue
        lines.append(
            f"| {row.artifact} | {scale * s.baseline_median_ms:.{digits}f} | "
            f"{scale * s.candidate_median_ms:.{digits}f} | "
            f"{100 * (s.ratio - 1):+.{2 if counted else 1}f} % | "
            f"{100 * (s.ci_low - 1):+.{2 if counted else 1}f} .. "
            f"{100 * (s.ci_high - 1):+.{2 if counted else 1}f} % | "
            f"{'-' if counted else format(s.p_slower, '.2g')} | "
            f"{min(s.n_baseline, s.n_candidate)} | **{row.verdict}** | {row.reason} |")
    lines += [f"- note: {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def document(result: GateResult, extra: dict | None = None) -> dict:
    """The verdict JSON: outcome, rule, both sides' identities, one row per artifact."""
    return {"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": mf.command_line(), "tools": mf.tool_versions(),
            "mode": result.mode, "metric": result.metric, "outcome": outcome(result),
            "exit_code": result.exit_code,
            "exit_codes": {"0": "pass (or improvement)", "1": "regression",
                           "2": "error or incomparable", "3": "unstable"},
            "rule": {**result.rule.to_dict(), "text": rule_text(result),
                     "unstable_is_failure": result.unstable_is_failure},
            "baseline": result.baseline, "candidate": result.candidate,
            "rows": [r.to_dict() for r in result.rows], "notes": result.notes,
            **(extra or {})}


def check_destinations(root: Path, json_path: Path | None) -> None:
    """Refuse outputs that cannot be written, before anything is read or measured: a verdict
    lost after a long A/B run helps no one. Creates nothing."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise GateError(f"{option('out')} {root} is a file, not a folder: pass a folder for the verdict "
                        f"folders.")
    if json_path is not None:
        json_path = Path(json_path)
        if json_path.is_dir():
            raise GateError(f"{option('json_out')} {json_path} is a folder: pass a file name for the "
                            f"verdict JSON.")
        if json_path.parent.exists() and not json_path.parent.is_dir():
            raise GateError(f"{option('json_out')} {json_path}: {json_path.parent} is a file, not a folder.")


def write(result: GateResult, root: Path, json_path: Path | None,
          extra: dict | None = None) -> Path:
    """verdict.json and summary.md in a new folder under ``root`` (atomically), a copy of the
    JSON at ``json_path``, and the table appended to $GITHUB_STEP_SUMMARY when it is set."""
    try:
        return _write(result, Path(root), json_path, extra)
    except OSError as exc:
        raise GateError(f"cannot write the verdict ({exc}): pass {option('out')} (and "
                        f"{option('json_out')}) where you "
                        f"can write.") from None


def _write(result: GateResult, root: Path, json_path: Path | None, extra: dict | None) -> Path:
    doc = document(result, extra)
    text = markdown(result)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{stamp}_{result.candidate['model']}_{result.mode}")
    folder = Path(root) / name
    with mf.StagingDir(folder) as staging:
        mf.write_json(staging.path / VERDICT, doc)
        (staging.path / "summary.md").write_text(text)
        staging.commit()
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        mf.write_json(json_path, doc)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(text + "\n")
    return folder
