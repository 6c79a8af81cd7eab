"""A bench run as a report: raw samples, statistics, component breakdown, parity, provenance."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import numpy as np

from ..bench.run import BenchRun, Measurement
from ..bench.noise import SlowMode, Wander, diagnose, slow_mode, wander
from ..bench.precision import StopRule, judge
from ..devices import device_fingerprint
from ..export import manifest as mf
from ..export.parity import device_parity
from .records import (COMPONENTS, SCHEMA_NAME, SCHEMA_VERSION, Breakdown, Core, Device,
                      ExportInfo, Failure, Fingerprint, Measured, Paper, Report, Share)

# SeaFormer++ paper, Fig. 10: SeaFormer-T latency shares on one Snapdragon 865 core.
PAPER_FIG10 = Paper(model="seaformer-t",
                    shares={"stem": 0.49, "context": 0.34, "spatial": 0.08, "head": 0.08},
                    source="SeaFormer++ (IJCV 2025), Fig. 10: one Snapdragon 865 core")


def build_report(run: BenchRun) -> dict:
    """The report of ``run`` in its JSON form (``report.json``)."""
    return build(run).to_dict()


def build(run: BenchRun) -> Report:
    artifacts = [_artifact(run, m) for m in run.measurements if m.runs and m.failure is None]
    manifest = run.manifest
    return Report(
        schema=SCHEMA_NAME, schema_version=SCHEMA_VERSION, status=run.status,
        created=datetime.fromtimestamp(run.finished or run.started, timezone.utc)
        .isoformat(timespec="seconds"),
        wall_seconds=round((run.finished or run.started) - run.started, 2),
        command=mf.command_line(), tools=mf.tool_versions(),
        device=Device(**run.info.to_dict(), core=Core(run.choice.core, run.choice.reason),
                      profile=run.profile, fingerprint=Fingerprint(**fingerprint(run))),
        protocol={**_protocol(run), "blocks": run.options.blocks,
                  "precision": _rule(run).precision,
                  "max_seconds": run.options.stop.max_seconds, "metric": run.options.metric,
                  **({"counted_iterations": run.options.counted_iterations}
                     if run.options.metric == "instructions" else {}),
                  "thermal": run.options.thermal.to_dict(),
                  "frequency_lock": run.frequency_lock},
        runners={fmt: r.identity for fmt, r in run.runners.items()},
        export=ExportInfo(folder=str(run.folder), model=manifest.model, input=manifest.input,
                          output=manifest.output, weights=manifest.weights,
                          samples=manifest.samples[:1], cache_key=manifest.cache_key,
                          manifest_sha256=mf.sha256_path(run.folder / mf.MANIFEST),
                          export_tools=manifest.tools),
        blocks=run.blocks, artifacts=artifacts, failures=_failures(run),
        components=component_breakdown(artifacts) if run.options.metric == "latency" else [],
        paper=PAPER_FIG10 if manifest.model.name == PAPER_FIG10.model else None,
        events=run.events, warnings=_warnings(run, artifacts),
        noise=diagnose(run.blocks, run.choice.core,
                       [(a.stats.n, SlowMode.from_dict(a.stats.slow_mode)) for a in artifacts],
                       [Wander.from_dict(a.stats.wander) for a in artifacts]),
        metric=run.options.metric)


def _failures(run: BenchRun) -> list[Failure]:
    """Artifacts the runner died or hung on, with what was measured before."""
    return [Failure(path=m.artifact.path, unit=m.artifact.unit, format=m.artifact.format,
                    precision=m.artifact.precision, **m.failure,
                    samples_ms=[round(float(v), 6) for r in m.runs for v in r.samples_ms])
            for m in run.measurements if m.failure is not None]


def _protocol(run: BenchRun) -> dict:
    p = run.protocol
    return {"core": p.core, "threads": p.threads, "warmup_iterations": p.warmup_iterations,
            "warmup_seconds": p.warmup_seconds, "iterations": p.iterations,
            "min_seconds": p.min_seconds, "rounds": p.rounds,
            "cooldown_seconds": p.cooldown_seconds}


def _artifact(run: BenchRun, m: Measurement) -> Measured:
    art = m.artifact
    samples = np.concatenate([r.samples_ms for r in m.runs])
    cpus = np.concatenate([r.cpus for r in m.runs])
    blocks = np.concatenate([np.full(len(r.samples_ms), b) for b, r in enumerate(m.runs)])
    rounds = np.concatenate([r.rounds for r in m.runs])
    return Measured(
        path=art.path, unit=art.unit, format=art.format, precision=art.precision,
        sha256=art.sha256, bytes=art.bytes,
        samples_ms=[round(float(v), 6) for v in samples],
        cpus=[int(c) for c in cpus],
        blocks=[int(b) for b in blocks], rounds=[int(v) for v in rounds],
        cpu_ok=bool(np.all(cpus == run.choice.core)),
        load_ms=[round(r.load_ms, 3) for r in m.runs],
        warmup_iterations=[r.warmup_iterations for r in m.runs],
        rss_after_load_kb=max(r.rss_after_load_kb for r in m.runs),
        stats=_stats(samples, blocks, rounds, run),
        parity=device_parity(art, m.outputs, run.folder) if m.outputs is not None else None,
        counts=m.counts)


def _rule(run: BenchRun) -> StopRule:
    """Instruction mode has no precision target: its timings are valgrind's, not latencies."""
    return replace(run.options.stop, precision=0.0) if run.options.metric != "latency" \
        else run.options.stop


def _stats(samples: np.ndarray, blocks: np.ndarray, rounds: np.ndarray, run: BenchRun):
    stats = judge(samples, blocks, rounds, _rule(run))
    stats.slow_mode = slow_mode(samples).to_dict()
    stats.wander = wander(samples).to_dict()
    return stats


def component_breakdown(artifacts: list[Measured]) -> list[Breakdown]:
    """Per format and precision: each component's median, its share, and sum / whole."""
    rows = []
    for fmt, precision in sorted({(a.format, a.precision) for a in artifacts}):
        units = {a.unit: a for a in artifacts if (a.format, a.precision) == (fmt, precision)}
        if not all(c in units for c in COMPONENTS):
            continue
        medians = {c: units[c].stats.median for c in COMPONENTS}
        total = sum(medians.values())
        whole = units["model"].stats.median if "model" in units else None
        rows.append(Breakdown(
            format=fmt, precision=precision, whole_median_ms=whole, sum_median_ms=total,
            sum_over_whole=total / whole if whole else None,
            components={c: Share(medians[c], medians[c] / total) for c in COMPONENTS}))
    return rows


def fingerprint(run: BenchRun) -> dict:
    """What must match for two reports' latencies to be comparable."""
    state = run.blocks[0]["state_before"] if run.blocks else {}
    return device_fingerprint(run.info, run.choice.core, state,
                              {f: r.identity for f, r in run.runners.items()})


def _warnings(run: BenchRun, artifacts: list[Measured]) -> list[str]:
    found = []
    for a in artifacts:
        if not a.cpu_ok:
            others = sorted(set(a.cpus) - {run.choice.core})
            found.append(f"{a.path}: iterations ran on CPU {others}, not only on "
                         f"{run.choice.core}")
        if a.stats.unstable:
            found.append(f"{a.path}: unstable ({a.stats.why})")
        if a.parity is not None and not a.parity.passed:
            found.append(f"{a.path}: on-device parity failed: {'; '.join(a.parity.failures)}")
    if run.profile:
        found += [f"device profile {run.profile['file']}: {m}"
                  for m in run.profile["mismatches"]]
    for block in run.blocks:
        if not block["pinned"] and run.choice.core >= 0:
            found.append(f"block {block['index']}: the runner could not pin itself "
                         f"({block['pin_error']})")
        found += [f"block {block['index']}: {flag}" for flag in block.get("drift") or []]
    found += [f"{m.artifact.path}: no result, the runner {m.failure['reason']} in block "
              f"{m.failure['block']}" for m in run.measurements if m.failure is not None]
    return found
