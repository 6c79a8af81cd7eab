"""What evaluate writes: evaluation.json (every number, the confusion matrices, and what is
needed to reproduce them), evaluation.md (the tables) and one confusion-matrix PNG per model.

All of it goes into a staging folder beside the output folder, renamed into place only when
complete, so a failed or interrupted evaluation leaves the previous one as it was.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..export import manifest as mf
from .metrics import scores
from .run import FP32, Evaluated, Evaluation

SCHEMA = "seaformer-deploy/evaluation"
SCHEMA_VERSION = 1
JSON, MARKDOWN = "evaluation.json", "evaluation.md"
PROCEDURE = {
    "test_mode": "whole image (mmseg mode='whole') at the export's fixed input size",
    "image_resize": "RGB stretched to the export size, bilinear with half-pixel centres and no "
                    "antialiasing (cv2 INTER_LINEAR, as mmcv.imresize), rounded to uint8",
    "normalization": "the export's manifest input.normalization: (x - mean) / std",
    "logits_resize": "bilinear, align_corners=False, to the label's size, then argmax; an "
                     "export of labels (PyTorch FP32 too, then): labels at the export size, "
                     "nearest-neighbour to the label's size",
    "ignore_index": 255,
    "metrics": "one confusion matrix per model over all images; IoU = TP / (TP + FP + FN) "
               "per class, NaN (null) for a class absent from truth and prediction and left "
               "out of mIoU; pixel accuracy = TP / all non-ignored pixels; percent",
    "vs_fp32": "the same metrics with PyTorch FP32's labels as the truth (every pixel)",
}


def default_folder(export_folder: Path) -> Path:
    return Path("evaluations") / Path(export_folder).resolve().name


def check_replaceable(folder: Path) -> None:
    """The output folder is replaced whole: it must be new, empty or an earlier evaluation,
    never a folder of other files (``--out .`` must not delete the working directory)."""
    from ..errors import OptionError, option

    if folder.is_dir() and any(folder.iterdir()) and not (folder / JSON).is_file():
        raise OptionError(f"{option('out')} {folder} holds files of its own and no {JSON}: "
                          f"evaluate replaces its output folder whole, so pass a new folder "
                          f"(or an earlier evaluation's).", field="out")


def document(ev: Evaluation) -> dict:
    """evaluation.json's content."""
    m, data = ev.manifest, ev.dataset
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": mf.command_line(), "seconds": ev.seconds,
        "export": {"folder": str(ev.folder), "model": m.model.name,
                   "num_classes": m.model.num_classes, "class_names": m.model.class_names,
                   "input_size": m.input.size, "output": m.output.mode,
                   "normalization": m.input.normalization, "weights": m.weights,
                   "cache_key": m.cache_key},
        "dataset": {"layout": data.layout, "images": str(data.images),
                    "labels": str(data.labels) if data.labels else None,
                    "reduce_zero_label": data.reduce_zero_label, "ignore_index": 255,
                    "count": len(data.pairs), "found": data.total,
                    "sha256": _digest(ev.files), "files": ev.files},
        "options": _options(ev),
        "procedure": PROCEDURE,
        "reference": {"name": FP32, **ev.reference},
        "results": [_result(r) for r in ev.results],
        "tools": mf.tool_versions(),
    }


def _options(ev: Evaluation) -> dict:
    """What selected the artifacts and images (the dataset's own record says where)."""
    opts = ev.options
    if opts is None:
        return {}
    return {"artifact": list(opts.artifact), "limit": opts.limit,
            "checkpoint": str(opts.checkpoint) if opts.checkpoint else None}


def _result(r: Evaluated) -> dict:
    out = {"name": r.name, "format": r.format, "precision": r.precision, "sha256": r.sha256,
           "parity_passed": r.parity_passed,
           "labels": _scores(r.labels), "vs_fp32": _scores(r.fp32)}
    if r.labels is not None or r.fp32 is not None:
        out["plot"] = plot_name(r.name)
    return out


def _scores(matrix: np.ndarray | None) -> dict | None:
    if matrix is None:
        return None
    return {**_finite(scores(matrix).to_dict()), "confusion": matrix.tolist()}


def _finite(values: dict) -> dict:
    """NaN (nothing counted) as null: JSON has no NaN."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def _digest(files: list[dict]) -> str:
    """One sha256 of the dataset: of every image's and label's name and sha256, in order."""
    lines = [f"{f['image']} {f['image_sha256']} {f.get('label', '')} {f.get('label_sha256', '')}"
             for f in files]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def plot_name(name: str) -> str:
    return f"confusion-{name}.png"


def markdown(doc: dict) -> str:
    """evaluation.md: the summary, then per-class IoU of every model."""
    ex, data = doc["export"], doc["dataset"]
    lines = [f"# Evaluation of {ex['model']} {'x'.join(map(str, ex['input_size']))} "
             f"({ex['output']})", "",
             f"Dataset: {data['layout']} {data['images']}, {data['count']} images"
             f"{' (of ' + str(data['found']) + ')' if data['found'] != data['count'] else ''}, "
             f"sha256 {data['sha256'][:16]}. Procedure: {doc['procedure']['test_mode']}; "
             f"see evaluation.json for every step.", "",
             "| model | mIoU % | mAcc % | pixel acc % | mIoU vs FP32 % | agreement vs FP32 % |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in doc["results"]:
        gt, vs = r["labels"] or {}, r["vs_fp32"] or {}
        lines.append(f"| {r['name']} | {_pct(gt.get('miou'))} | {_pct(gt.get('mean_accuracy'))}"
                     f" | {_pct(gt.get('pixel_accuracy'))} | {_pct(vs.get('miou'))} | "
                     f"{_pct(vs.get('pixel_accuracy'))} |")
    lines += ["", "PyTorch FP32 against itself is omitted (100 %). Without labels only the "
              "columns against FP32 are filled.", ""]
    key = "labels" if data["labels"] else "vs_fp32"
    shown = [r for r in doc["results"] if r[key]]
    if shown:
        names = ex["class_names"] or [""] * ex["num_classes"]
        lines += [f"## IoU per class ({'vs labels' if key == 'labels' else 'vs PyTorch FP32'},"
                  f" %; - : absent from truth and prediction)", "",
                  "| class | " + " | ".join(r["name"] for r in shown) + " |",
                  "| --- |" + " ---: |" * len(shown)]
        for c, name in enumerate(names):
            lines.append(f"| {f'{c} {name}'.strip()} | " + " | ".join(_pct(r[key]["iou"][c]) for r in shown)
                         + " |")
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def plot(matrix: np.ndarray, title: str, names: list[str] | None, path: Path) -> None:
    """The row-normalised confusion matrix (each true class's pixels, where they went)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    n = len(matrix)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(share, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="share of the true class's pixels")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 40:
        ticks = names if names and n <= 25 else [str(i) for i in range(n)]
        ax.set_xticks(range(n), ticks, rotation=90, fontsize=6)
        ax.set_yticks(range(n), ticks, fontsize=6)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(ev: Evaluation, doc: dict, folder: Path) -> Path:
    """Write ``doc`` (``document(ev)``), its Markdown and the plots into ``folder``
    (replacing an earlier evaluation there) atomically."""
    names = doc["export"]["class_names"]
    with mf.StagingDir(Path(folder)) as staging:
        mf.write_json(staging.path / JSON, doc)
        (staging.path / MARKDOWN).write_text(markdown(doc))
        for r in ev.results:
            truth = r.labels if r.labels is not None else r.fp32
            if truth is None:
                continue
            what = "labels" if r.labels is not None else "PyTorch FP32's labels"
            plot(truth, f"{r.name} vs {what}: {ev.manifest.model.name}, "
                        f"{ev.dataset.layout}, {len(ev.dataset.pairs)} images",
                 names, staging.path / plot_name(r.name))
        staging.commit()
    return Path(folder)
