"""``evaluate``: every selected whole-model artifact and PyTorch FP32 over one dataset.

Everything that can be checked before the models run is: the options, the export (each selected
file hashed against its manifest), the dataset's layout and pairing, and every label map (one
channel, its image's size, values in range). Then the images go through in chunks: each chunk
is read and prepared once and run by PyTorch FP32 and every artifact, which fill one confusion
matrix each against the labels and one against FP32's own labels. Nothing is written until all
of it has run (output.py writes into a staging folder renamed into place).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fnmatch import fnmatch
from pathlib import Path

import numpy as np

from ..errors import OptionError, option
from ..export import manifest as mf
from ..export.records import Artifact, Manifest
from ..export.units import WHOLE
from . import datasets, predict
from .metrics import confusion

Progress = Callable[[str, int, int], None]
CHUNK = 8                      # images per runtime session (a session per call: see runtimes)
FP32 = "pytorch.fp32"          # the reference's name in the results


@dataclass(frozen=True)
class EvaluateOptions:
    artifacts: Path                          # an export folder (with manifest.json)
    data: Path | None = None                 # an ADE20K or Cityscapes folder
    images: Path | None = None               # plain pairs: the images ...
    labels: Path | None = None               # ... and their labels, matched by stem
    reduce_zero_label: bool = False          # plain pairs: label 0 ignored, others minus 1
    artifact: tuple[str, ...] = ("model.*",)  # shell patterns over the artifacts' file names
    checkpoint: Path | None = None           # the export's checkpoint (default: its path)
    trust_checkpoint: bool = False
    limit: int | None = None                 # the first N images (sorted by path)
    out: Path | None = None                  # default: evaluations/<export folder name>


@dataclass
class Evaluated:
    """One model's results: its confusion matrices against the labels and against FP32."""

    name: str                                # pytorch.fp32 or the artifact's file name
    format: str | None
    precision: str
    sha256: str | None                       # of the file that ran
    parity_passed: bool | None
    labels: np.ndarray | None = None         # vs the ground truth (None: unlabelled data)
    fp32: np.ndarray | None = None           # vs PyTorch FP32's labels (None: FP32 itself)


@dataclass
class Evaluation:
    """Everything evaluation.json is made of."""

    folder: Path
    manifest: Manifest
    dataset: datasets.Dataset
    files: list[dict]                        # per image: names and sha256 of image and label
    reference: dict                          # how the FP32 model was rebuilt and checked
    results: list[Evaluated]
    seconds: float = 0.0
    options: EvaluateOptions | None = field(default=None, repr=False)


def evaluate(opts: EvaluateOptions, progress: Progress | None = None) -> Evaluation:
    """Evaluate as ``opts`` say; nothing is written here (see output.write)."""
    from .reference import rebuild

    started = time.perf_counter()
    folder = Path(opts.artifacts)
    manifest = mf.read(folder)
    selected = select(manifest, opts.artifact)
    hashes = _verify(folder, selected)
    data = datasets.find(opts.data, opts.images, opts.labels, opts.reduce_zero_label, opts.limit)
    files = check_labels(data, manifest.model.num_classes, progress)
    model, reference = rebuild(manifest, folder, opts.checkpoint, opts.trust_checkpoint)
    runners = {FP32: predict.TorchModel(model, manifest.output.mode)}
    runners |= {a.path: predict.ArtifactModel(a, folder / a.path) for a in selected}
    results = [Evaluated(FP32, None, "fp32", None, None)]
    results += [Evaluated(a.path, a.format, a.precision, hashes[a.path], a.parity.passed)
                for a in selected]
    _run(data, manifest, runners, results, progress)
    return Evaluation(folder, manifest, data, files, reference, results,
                      round(time.perf_counter() - started, 2), opts)


def select(manifest: Manifest, patterns: tuple[str, ...]) -> list[Artifact]:
    """The whole-model artifacts (and their ONNX Runtime forms) whose file name matches."""
    candidates = [a for a in manifest.artifacts if a.unit == WHOLE]
    candidates += [replace(a, path=f.path, sha256=f.sha256, bytes=f.bytes, parity=f.parity)
                   for a in manifest.artifacts if a.unit == WHOLE for f in a.ort_forms or []]
    if not patterns:
        raise OptionError(f"{option('artifact')} is empty: pass a pattern such as model.* or "
                          f"model.fp16.*.", field="artifact")
    chosen = [a for a in candidates if any(fnmatch(a.path, p) for p in patterns)]
    if not chosen:
        components = [a.path for a in manifest.artifacts if a.unit != WHOLE
                      and any(fnmatch(a.path, p) for p in patterns)]
        why = (f" ({', '.join(components[:3])} are components: evaluate runs whole models)"
               if components else "")
        raise OptionError(f"{option('artifact')} {','.join(patterns)} matches no whole-model "
                          f"artifact of the export{why}; it has "
                          f"{', '.join(a.path for a in candidates)}.", field="artifact")
    return chosen


def _verify(folder: Path, selected: list[Artifact]) -> dict[str, str]:
    """path -> sha256 of each selected file as it is, which must be the manifest's: the
    results name the files that ran, so an edited or missing one is an error, not a result."""
    hashes, problems = {}, []
    for art in selected:
        file = folder / art.path
        if not file.is_file():
            problems.append(f"{art.path} is missing")
            continue
        hashes[art.path] = mf.sha256_path(file)
        if hashes[art.path] != art.sha256:
            problems.append(f"{art.path} differs from the manifest's sha256 "
                            f"({hashes[art.path][:12]} != {art.sha256[:12]})")
    if problems:
        raise OptionError(f"{option('artifacts')} {folder} is not what its manifest describes: "
                          f"{'; '.join(problems)}. Re-export it (`seaformer-deploy export ... "
                          f"--force`), or leave those out with {option('artifact')}.",
                          field="artifacts")
    return hashes


def check_labels(data: datasets.Dataset, num_classes: int,
                 progress: Progress | None) -> list[dict]:
    """Read every label map once before any model runs (a bad one fails in seconds, not after
    an hour); the per-image record of evaluation.json: names and sha256 of both files."""
    from PIL import Image

    files = []
    for i, pair in enumerate(data.pairs):
        entry = {"image": pair.name, "image_sha256": mf.sha256_path(pair.image)}
        if pair.label is not None:
            with Image.open(pair.image) as image:
                size = (image.height, image.width)
            datasets.read_label(pair, size, data.reduce_zero_label, num_classes)
            entry |= {"label": pair.label.relative_to(data.labels).as_posix(),
                      "label_sha256": mf.sha256_path(pair.label)}
        files.append(entry)
        if progress:
            progress("checking the dataset", i + 1, len(data.pairs))
    return files


def _run(data: datasets.Dataset, manifest: Manifest, runners: dict, results: list[Evaluated],
         progress: Progress | None) -> None:
    size, norm = tuple(manifest.input.size), manifest.input.normalization
    classes = manifest.model.num_classes
    by_name = {r.name: r for r in results}
    total, done = len(data.pairs) * len(runners), 0
    for start in range(0, len(data.pairs), CHUNK):
        pairs = data.pairs[start:start + CHUNK]
        rgbs = [predict.load_rgb(p.image) for p in pairs]
        sizes = [rgb.shape[:2] for rgb in rgbs]
        truths = [datasets.read_label(p, s, data.reduce_zero_label, classes)
                  for p, s in zip(pairs, sizes)] if data.labelled else None
        batch = np.concatenate([predict.prepare(rgb, size, norm) for rgb in rgbs])
        reference = None
        for name, runner in runners.items():
            if progress:
                progress(name, done, total)
            labels = [predict.to_labels(out, runner.kind, s)
                      for out, s in zip(runner(batch), sizes)]
            reference = labels if name == FP32 else reference
            _accumulate(by_name[name], labels, truths, None if name == FP32 else reference,
                        classes)
            done += len(pairs)
    if progress:
        progress("done", total, total)


def _accumulate(result: Evaluated, labels: list[np.ndarray], truths: list | None,
                reference: list | None, classes: int) -> None:
    if truths is not None:
        result.labels = _add(result.labels, sum(confusion(t, p, classes)
                                                for t, p in zip(truths, labels)))
    if reference is not None:
        result.fp32 = _add(result.fp32, sum(confusion(r, p, classes)
                                            for r, p in zip(reference, labels)))


def _add(total: np.ndarray | None, more: np.ndarray) -> np.ndarray:
    return more if total is None else total + more
