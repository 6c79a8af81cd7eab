"""Realistic weights when no checkpoint is given.

A model fresh from ``__init__`` has identity BatchNorm statistics and zero BN weights at the end
of every attention branch: whole branches output exactly zero, folding changes nothing and parity
passes trivially. A random classifier is no better: its logits are a tie between many classes at
every pixel, so any rounding flips labels, unlike a trained segmenter. We build instead:

1. seeded weights, with a random affine transform in every BatchNorm, then the family's own
   adjustment if its spec has one (``ModelSpec.synthetic_setup``; TopFormer's attention, which
   applies no 1/sqrt(d) scale, gets its q and k BN weights scaled by d^-1/4 each, as training
   would have done);
2. BatchNorm statistics calibrated with a train-mode pass over the sample images and their
   mirror images, at the export size but at least 256 pixels a side, so that even the 1/64
   stage sees enough positions for stable statistics;
3. a nearest-prototype classifier: the rows of ``conv_seg`` for ten classes (about what an
   ADE20K scene contains) are k-means centroids of the features it receives on those images;
   the other classes never win;
4. a short fit of the spatial and head components (60 Adam steps, stem and context frozen) to
   the labels that classifier assigns. Without it the classes are cells of one continuous
   feature cloud and many pixels sit on a cell boundary, where any rounding flips the label;
   with it, as in a trained model, most pixels lie well inside their region (median top-1 /
   top-2 logit margin about 8 at 256x256 and above) and only region boundaries are sensitive to
   FP16. Below 256x256 the logit maps are so small that boundary pixels dominate, and FP16 label
   agreement falls to about 99 % (hence the FP16 gate's 98.5 %, export/precision.py).

The build is deterministic and takes 10-15 s of CPU whatever the export size (the calibration
runs at 256 px or more), so a built model's state dict is kept in the user's cache, keyed by
everything it depends on: the arguments, this package's code, the torch version, the build's
thread count and the CPU kernels' instruction set. Families registered outside the package are
always rebuilt: their code is not in the key. An entry unused for ``STALE_DAYS`` is dropped.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..models import SegmentationModel
from ..models.components import run_chain
from ..models.registry import build, get_spec
from ..paths import cache_root, unused_for_long
from .manifest import code_digest
from .samples import sample_batch

CALIBRATION_MIN_SIDE = 256
MEDIAN_MARGIN = 3.0                    # of the prototype classifier, before the head fit
KMEANS_ITERATIONS = 12
# Classes present in a typical scene (ADE20K images hold about ten); the rest never win.
ACTIVE_CLASSES = 10
HEAD_FIT_STEPS = 60
HEAD_FIT_LR = 3e-3
BUILD_THREADS = 2
_PACKAGE = __name__.split(".")[0] + "."


def synthetic_model(name: str, size: tuple[int, int], seed: int = 0, count: int = 4,
                    num_classes: int | None = None) -> SegmentationModel:
    """Build ``name`` with seeded, calibrated weights for inputs of ``size``.

    On a fixed number of threads: the head's 60 Adam steps and k-means amplify the last bits
    that a parallel reduction's split changes (built on 1 and on 2 threads, the logits were 0.09
    apart), and ``evaluate``'s rebuild must match the export's on any machine. Two: what every
    figure, test threshold and baseline here was made with (2-core machines)."""
    path = _cache_path(name, size, seed, count, num_classes)
    if path is not None and (model := _load(path, name, num_classes)) is not None:
        return model
    threads = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    try:
        model = _synthetic_model(name, size, seed, count, num_classes)
    finally:
        torch.set_num_threads(threads)
    if path is not None:
        _store(path, model)
    return model


def _cache_path(name: str, size: tuple[int, int], seed: int, count: int,
                num_classes: int | None) -> Path | None:
    """Where the build of these arguments is kept; None for a family whose code lives outside
    this package (the code digest would not see it change)."""
    spec = get_spec(name)
    if not all(_ours(hook) for hook in (spec.build, spec.synthetic_setup)):
        return None
    fields = {"name": name, "size": list(size), "seed": seed, "count": count,
              "num_classes": num_classes, "code": code_digest(), "torch": torch.__version__,
              "threads": BUILD_THREADS,
              # the kernels' instruction set changes last bits, which the head fit amplifies
              # (a home folder shared by machines of other CPUs)
              "cpu": torch.backends.cpu.get_cpu_capability()}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root() / "weights" / f"{name}-{size[0]}x{size[1]}-seed{seed}-{digest}.pt"


def _ours(hook) -> bool:
    """Is ``hook`` (a builder, maybe a functools.partial of a class, or None) our code?"""
    while isinstance(hook, functools.partial):
        hook = hook.func
    return hook is None or getattr(hook, "__module__", "").startswith(_PACKAGE)


def _load(path: Path, name: str, num_classes: int | None) -> SegmentationModel | None:
    """The cached build, or None when there is none or it does not load (a truncated or
    foreign file is rebuilt over). A hit marks the file used, which keeps the pruning away."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        with torch.random.fork_rng(devices=[]):      # as a build, leave the caller's RNG be
            model = build(name, num_classes)
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError, EOFError, KeyError, TypeError,
            AttributeError):
        return None
    with contextlib.suppress(OSError):
        os.utime(path)
    return model.eval()


def _store(path: Path, model: nn.Module) -> None:
    """Write atomically (concurrent exports may build the same key); a cache that cannot be
    written only costs the next export a rebuild."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(model.state_dict(), handle)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return
    _prune(path.parent)


def _prune(folder: Path) -> None:
    for entry in folder.glob("*.pt"):
        with contextlib.suppress(OSError):
            if unused_for_long(entry):
                entry.unlink()


def _synthetic_model(name: str, size: tuple[int, int], seed: int, count: int,
                     num_classes: int | None) -> SegmentationModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(name, num_classes)
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for mod in model.modules():
                if isinstance(mod, nn.BatchNorm2d):
                    mod.weight.copy_(0.5 + torch.rand(mod.num_features, generator=gen))
                    mod.bias.copy_(0.25 * torch.randn(mod.num_features, generator=gen))
            setup = get_spec(name).synthetic_setup
            if setup is not None:
                setup(model)
        images = calibration_images(model, size, count)
        calibrate_batchnorm(model, images)
        fit_prototype_classifier(model, images, gen)
        fit_head(model, images)
    return model


def calibration_images(model: SegmentationModel, size: tuple[int, int], count: int) -> torch.Tensor:
    multiple = model.contract.multiple
    h, w = (max(v, -(-CALIBRATION_MIN_SIDE // multiple) * multiple) for v in size)
    images = sample_batch(h, w, count)
    return torch.cat([images, images.flip(-1)])


def calibrate_batchnorm(model: nn.Module, images: torch.Tensor) -> None:
    """Set every BN's running statistics to those of ``images`` (cumulative, one pass)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None                      # cumulative average instead of an EMA
    model.train()
    with torch.no_grad():
        model(images)
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    model.eval()


def fit_prototype_classifier(model: SegmentationModel, images: torch.Tensor,
                             gen: torch.Generator) -> None:
    """Turn ``decode_head.conv_seg`` into a confident nearest-centroid classifier.

    ``ACTIVE_CLASSES`` classes get k-means centroids of the features ``conv_seg`` receives; the
    others get small random rows and a bias that keeps them below every active class, like the
    classes a scene does not contain.
    """
    conv = model.decode_head.conv_seg
    captured = []
    handle = conv.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    with torch.no_grad():
        model(images)
    handle.remove()
    feats = captured[0].permute(0, 2, 3, 1).reshape(-1, conv.in_channels)
    active = min(ACTIVE_CLASSES, conv.out_channels)
    centroids = _kmeans(feats, active, gen)
    # Nearest centroid: argmax_k f.c_k - |c_k|^2 / 2. Subtracting the mean centroid from every
    # row removes the term all classes share (f.mean), keeping logits at a trained model's scale
    # instead of hundreds, where FP16 spacing would swamp the margins.
    mean = centroids.mean(0, keepdim=True)
    weight = centroids - mean
    bias = -0.5 * ((centroids ** 2).sum(1) - (mean ** 2).sum())
    logits = feats @ weight.T + bias
    top2 = logits.topk(2, dim=1).values
    scale = MEDIAN_MARGIN / (top2[:, 0] - top2[:, 1]).median().clamp_min(1e-6)
    rows = 0.05 * weight.std() * torch.randn(conv.out_channels, conv.in_channels, generator=gen)
    biases = torch.full((conv.out_channels,), float((logits.min() - bias.mean()) * scale) - 10)
    chosen = torch.randperm(conv.out_channels, generator=gen)[:active]
    rows[chosen] = weight * scale
    biases[chosen] = (bias - bias.mean()) * scale
    with torch.no_grad():
        conv.weight.copy_(rows[:, :, None, None])
        conv.bias.copy_(biases)


def fit_head(model: SegmentationModel, images: torch.Tensor) -> None:
    """Self-training of the spatial and head components on their own labels (rest frozen)."""
    stem, context, spatial, head = model.components()
    with torch.no_grad():
        env = run_chain([stem, context], images)
        labels = model(images).argmax(1)
    inputs = [env[name] for name in spatial.input_names]
    params = [*spatial.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=HEAD_FIT_LR)
    model.eval()                               # BN keeps the calibrated statistics
    for _ in range(HEAD_FIT_STEPS):
        optimizer.zero_grad()
        F.cross_entropy(head(*spatial(*inputs))[0], labels).backward()
        optimizer.step()
    for p in params:
        p.grad = None


def _kmeans(points: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Plain Lloyd iterations from k distinct random points (more points than k required)."""
    if len(points) < k:
        points = points.repeat(-(-k // len(points)), 1)
    centroids = points[torch.randperm(len(points), generator=gen)[:k]].clone()
    for _ in range(KMEANS_ITERATIONS):
        assign = torch.cdist(points, centroids).argmin(1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    return centroids
