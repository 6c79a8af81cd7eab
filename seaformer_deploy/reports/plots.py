"""PNG plots of a report: component breakdown and latency distributions (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend

from .records import COMPONENTS, Report  # noqa: E402

COLOURS = {"stem": "#4C72B0", "context": "#DD8452", "spatial": "#55A868", "head": "#C44E52"}


def plot_components(report: Report, path: Path) -> None:
    """Stacked shares per format and precision, with the paper's Fig. 10 beside them."""
    bars = [(f"{c.format} {c.precision}\n{c.sum_median_ms:.1f} ms",
             {k: c.components[k].share for k in COMPONENTS}) for c in report.components]
    if report.paper:
        bars.append(("paper Fig. 10\n(SD865, TNN)", report.paper.shares))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(bars) + 1.5), 4.2))
    if not bars:
        ax.text(0.5, 0.5, "no complete set of components measured", ha="center", va="center")
        ax.set_axis_off()
    for i, (_label, shares) in enumerate(bars):
        bottom = 0.0
        for k in COMPONENTS:
            ax.bar(i, shares[k], bottom=bottom, color=COLOURS[k], label=k if i == 0 else None)
            if shares[k] >= 0.05:
                ax.text(i, bottom + shares[k] / 2, f"{100 * shares[k]:.0f}%", ha="center",
                        va="center", fontsize=8, color="white")
            bottom += shares[k]
    if bars:
        ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
        ax.set_ylabel("share of the components' summed median latency")
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title(f"{report.export.model.name}: where the time goes", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_distributions(report: Report, path: Path) -> None:
    """One box per artifact (whiskers 1-99 %), log-scaled latency."""
    arts = report.artifacts
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(arts) + 2), 4.5))
    if arts:
        ax.boxplot([a.samples_ms for a in arts], whis=(1, 99), showfliers=True,
                   flierprops={"markersize": 2})
        ax.set_xticks(range(1, len(arts) + 1), [a.path for a in arts], rotation=60,
                      ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("latency per iteration (ms)")
    ax.set_title(f"{report.export.model.name} on {report.device.name}, "
                 f"cpu{report.device.core.index}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
