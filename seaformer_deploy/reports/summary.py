"""The Markdown summary of a report (``summary.md``)."""

from __future__ import annotations

import numpy as np

from .records import COMPONENTS, Report


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


LATENCY_COLUMNS = ("artifact", "median", "95% CI", "+-", "trimmed mean", "p90", "p99", "CV", "n",
                   "on core", "on-device parity")


def _precision(s) -> str:
    """The half-width of the median's CI reached, ! when the result is unstable."""
    reached = "-" if s.precision is None else f"{100 * s.precision:.1f}%"
    return reached + ("!" if s.unstable else "")


def latency_rows(report: Report) -> list[list[str]]:
    rows = []
    for a in report.artifacts:
        s = a.stats
        lo, hi = s.median_ci95
        rows.append([a.path, _ms(s.median), f"{lo:.3g}-{hi:.3g}", _precision(s),
                     _ms(s.trimmed_mean), _ms(s.p90), _ms(s.p99), f"{100 * s.cv:.1f}%",
                     str(s.n), "yes" if a.cpu_ok else "NO", _parity_cell(a)])
    return rows


COUNT_COLUMNS = ("artifact", "instructions (M)", "spread", "I1 misses (k)", "D1 misses (k)",
                 "LL misses (k)", "n", "on-device parity")


def count_rows(report: Report) -> list[list[str]]:
    """Instruction mode: callgrind's events per counted iteration (medians)."""
    rows = []
    for a in report.artifacts:
        c = {event: float(np.median(v)) for event, v in a.counts.items()}
        ir = a.counts["Ir"]
        spread = (max(ir) - min(ir)) / c["Ir"] if c["Ir"] else 0.0
        rows.append([a.path, f"{c['Ir'] / 1e6:.3f}", f"{100 * spread:.3f}%",
                     f"{c.get('I1mr', 0) / 1e3:.1f}",
                     f"{(c.get('D1mr', 0) + c.get('D1mw', 0)) / 1e3:.1f}",
                     f"{(c.get('ILmr', 0) + c.get('DLmr', 0) + c.get('DLmw', 0)) / 1e3:.1f}",
                     str(len(ir)), _parity_cell(a)])
    return rows


def _parity_cell(a) -> str:
    parity = a.parity
    if parity is None:
        return "-"
    psnr = parity.worst.psnr_db
    return ("pass" if parity.passed else "FAIL") + (f" {psnr:.0f}dB" if psnr is not None else "")


def measurement_table(report: Report) -> tuple[tuple[str, ...], list[list[str]], str]:
    """The report's main table (columns, rows, title) for its metric."""
    if report.metric == "instructions":
        return COUNT_COLUMNS, count_rows(report), "instructions per iteration (callgrind)"
    return LATENCY_COLUMNS, latency_rows(report), "latency (ms)"


def component_rows(report: Report) -> list[list[str]]:
    rows = []
    for c in report.components:
        parts = [f"{_ms(part.median_ms)} ({100 * part.share:.0f}%)"
                 for part in (c.components[k] for k in COMPONENTS)]
        ratio = f"{c.sum_over_whole:.3f}" if c.sum_over_whole else "-"
        rows.append([f"{c.format} {c.precision}", *parts, _ms(c.sum_median_ms),
                     _ms(c.whole_median_ms), ratio])
    if report.paper:
        shares = report.paper.shares
        rows.append(["paper Fig. 10", *[f"({100 * shares[k]:.0f}%)" for k in COMPONENTS],
                     "", "", ""])
    return rows


def _profile_line(profile: dict | None) -> list[str]:
    if not profile:
        return []
    agreement = ("matches the probe" if not profile["mismatches"]
                 else "differs: " + "; ".join(profile["mismatches"]))
    return [f"- profile: {profile['name']} (`devices/{profile['file']}`), {agreement}"]


def _runner_lines(runners: dict) -> list[str]:
    """Which native runner build ran and how it was started (the report has every hash)."""
    lines = []
    for fmt, r in sorted(runners.items()):
        if "launch" in r:
            lines.append(f"- {fmt} runner: {r['target']} for {r['abi']} ({r['toolchain']}, "
                         f"launch {r['launch']}; chosen by {r.get('chosen_by', '-')}), "
                         f"{len(r.get('files', {}))} files, binary "
                         f"`{r['binary_sha256'][:16]}`")
    return lines


def _stop_rule(proto: dict) -> str:
    if not proto.get("precision"):
        return ""
    return (f"; then more blocks until the median's 95 % CI is within "
            f"+-{100 * proto['precision']:g} % (at most {proto['max_seconds']:g} s of measuring)")


def markdown(report: Report) -> str:
    exp, dev, proto = report.export, report.device, report.protocol
    size = "x".join(map(str, exp.input.size))
    lines = [f"# {exp.model.name} {size} ({exp.output.mode}) on {dev.name}", "",
             f"- status: **{report.status}**, {report.created}, {report.wall_seconds:.0f} s",
             f"- device: {dev.kind} via {dev.transport}; CPU "
             f"{dev.topology['cpu_model']}; {dev.topology['kernel']}",
             f"- core: **cpu{dev.core.index}** ({dev.core.reason}); "
             f"fingerprint `{dev.fingerprint.digest}`",
             *_profile_line(dev.profile),
             *_runner_lines(report.runners),
             f"- protocol: {proto['threads']} thread, warm-up >= {proto['warmup_iterations']} "
             f"iterations and {proto['warmup_seconds']} s, timed >= {proto['iterations']} "
             f"iterations and {proto['min_seconds']} s per artifact, {proto['rounds']} "
             f"interleaved rounds in {proto['blocks']} blocks" + _stop_rule(proto),
             f"- weights: {exp.weights['source']}; export cache key `{exp.cache_key[:16]}`",
             *([f"- noise: {report.noise.diagnosis}"] if report.noise else []),
             "",
             ""]
    columns, rows, title = measurement_table(report)
    lines += [f"## {title[0].upper()}{title[1:]}", ""]
    lines += _table(list(columns), rows)
    if report.metric == "instructions":
        lines += ["", "Counted by valgrind's callgrind on its synthetic CPU: a proxy for the "
                      "work done, repeatable whatever the machine's load, not a latency; "
                      "spread: (max - min) / median over the counted iterations."]
    else:
        lines += ["", "+-: the half-width of the median's 95 % CI, as a share of the median; "
                      "! marks an unstable result (target missed or drift, see the warnings); "
                      "'on core': every iteration ran on the pinned CPU."]
    if report.components:
        lines += ["", "## Components (median ms, share of their sum)", ""]
        lines += _table(["", *COMPONENTS, "sum", "whole model", "sum / whole"],
                        component_rows(report))
    if report.failures:
        lines += ["", "## Failed artifacts", ""]
        for f in report.failures:
            tail = f.stderr_tail.strip().splitlines()[-3:]
            lines.append(f"- {f.path}: the {f.runner} runner {f.reason} in block {f.block}"
                         + (f" ({f.phase})" if f.phase else "")
                         + (": `" + " / ".join(tail) + "`" if tail else ""))
    lock = proto.get("frequency_lock")
    if lock:
        lines += ["", f"Frequency: cpu{lock['core']} locked at {lock['khz'] / 1e3:.0f} MHz "
                      f"({lock['governor']}, via {lock['via']}), restored afterwards."]
    lines += ["", "## Tools", ""]
    lines += [f"- {k}: {v}" for k, v in sorted(report.tools.items())]
    if report.warnings or report.events:
        lines += ["", "## Warnings and events", ""]
        lines += [f"- {w}" for w in report.events + report.warnings]
    return "\n".join(lines) + "\n"
