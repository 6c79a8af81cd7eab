"""Reading official checkpoints safely and loading them strictly.

Checkpoints are pickles, and unpickling can run arbitrary code. We load with
``torch.load(weights_only=True)`` and allow-list only the harmless globals real checkpoints carry:
mmseg's ``meta`` (class names, palette, config text, environment string, numpy scalars and arrays)
and timm's ``args`` (an ``argparse.Namespace``). Anything else is refused unless the user passes
``--trust-checkpoint``.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import re
import zipfile
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError

# Training-only modules that mmseg drops at inference; present in some mmseg checkpoints.
IGNORED_PREFIXES = ("auxiliary_head.",)
# Where the weights live in a checkpoint file, in order of preference (timm prefers the EMA).
STATE_DICT_KEYS = ("state_dict_ema", "state_dict", "model")

TRUST_HINT = ("If you trust whoever made this file, re-run with --trust-checkpoint: that unpickles "
              "it with full privileges, so any code stored in it runs as you.")


def _numpy_safe_globals() -> list:
    """numpy scalars, dtypes and arrays, under their numpy 2 and numpy 1 pickle names."""
    from numpy._core import multiarray

    dtype_classes = {type(np.dtype(t)) for t in
                     (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
                      np.uint8, np.uint16, np.uint32, np.uint64, np.bool_, np.str_, np.object_)}
    found = [np.dtype, np.ndarray, *dtype_classes]
    for fn in (multiarray.scalar, multiarray._reconstruct):
        found += [(fn, f"numpy._core.multiarray.{fn.__name__}"),
                  (fn, f"numpy.core.multiarray.{fn.__name__}")]
    return found


SAFE_GLOBALS = [argparse.Namespace, *_numpy_safe_globals()]


@dataclass
class Checkpoint:
    """The weights of a checkpoint file and what we know about where they came from."""

    path: Path
    sha256: str
    state_dict: dict[str, torch.Tensor]
    source_key: str                       # which entry held the weights, or "<bare dict>"
    meta: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def class_names(self) -> list[str] | None:
        names = self.meta.get("CLASSES")
        return [str(n) for n in names] if names is not None else None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _unsafe_globals(path: Path) -> list[str]:
    """The globals a checkpoint needs beyond the allow-list (read statically, nothing runs)."""
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path))))
    except Exception:  # noqa: BLE001 - only enriches an error message
        return []


def _torch_load(path: Path, trust: bool) -> object:
    if trust:
        return torch.load(path, map_location="cpu", weights_only=False)
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(path: str | Path, trust: bool = False) -> Checkpoint:
    """Read a checkpoint file; raise ``UserError`` with an actionable message if we cannot."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist (or is not a file). Pass the path of a "
                        f".pth file, e.g. an official SeaFormer/TopFormer checkpoint.")
    try:
        obj = _torch_load(path, trust)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower() and "weights_only" not in str(exc).lower():
            raise _unreadable(path, exc) from None
        names = ", ".join(_unsafe_globals(path)) or _first_sentence(exc)
        raise UserError(
            f"checkpoint {path} contains Python objects outside the safe allow-list ({names}). "
            f"Loading them would let the file run code. {TRUST_HINT}") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as exc:
        raise _unreadable(path, exc) from None
    state_dict, source_key = extract_state_dict(obj, path)
    meta = obj.get("meta") if isinstance(obj, Mapping) else None
    ckpt = Checkpoint(path, sha256_file(path), state_dict, source_key,
                      dict(meta) if isinstance(meta, Mapping) else {})
    _drop_training_only(ckpt)
    return ckpt


def _unreadable(path: Path, exc: BaseException) -> UserError:
    size = path.stat().st_size
    return UserError(f"cannot read checkpoint {path} ({size} bytes): the file is truncated, "
                     f"corrupt or not a PyTorch checkpoint ({_first_sentence(exc)}). Download it "
                     f"again and compare its size and sha256 with the published ones.")


def _first_sentence(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].split(". ")[0].rstrip(".")


def extract_state_dict(obj: object, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Find the weights in an mmseg, timm or bare checkpoint; strip DataParallel's ``module.``."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise UserError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict of "
                        f"tensors or a dict with one of {', '.join(STATE_DICT_KEYS)}.")
    for key in STATE_DICT_KEYS:
        inner = obj.get(key)
        if isinstance(inner, nn.Module):
            inner = inner.state_dict()
        if isinstance(inner, Mapping) and inner:
            return _clean(inner, path), key
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return _clean(obj, path), "<bare dict>"
    raise UserError(f"checkpoint {path} has no weights: expected one of "
                    f"{', '.join(STATE_DICT_KEYS)} or a bare dict of tensors; found keys "
                    f"{', '.join(map(str, list(obj)[:8]))}.")


def _clean(state_dict: Mapping, path: Path) -> dict[str, torch.Tensor]:
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"checkpoint {path}: entries {bad[:5]} are not tensors.")
    out = dict(state_dict)
    if out and all(k.startswith("module.") for k in out):
        out = {k[len("module."):]: v for k, v in out.items()}
    return out


def _drop_training_only(ckpt: Checkpoint) -> None:
    dropped = [k for k in ckpt.state_dict if k.startswith(IGNORED_PREFIXES)]
    for k in dropped:
        del ckpt.state_dict[k]
    if dropped:
        prefixes = ", ".join(IGNORED_PREFIXES)
        ckpt.notes.append(f"ignored {len(dropped)} training-only keys ({prefixes})")


@dataclass
class KeyDiff:
    missing: list[str]
    unexpected: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]  # key, model, checkpoint

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def diff_keys(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> KeyDiff:
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    mismatched = [(k, tuple(expected[k].shape), tuple(found[k].shape))
                  for k in expected if k in found and expected[k].shape != found[k].shape]
    return KeyDiff(missing, unexpected, mismatched)


def _group(key: str) -> str:
    """The module a key belongs to, two levels deep (``backbone.trans1``, ``decode_head.fuse1``)."""
    return ".".join(re.split(r"\.", key)[:2])


def format_diff(diff: KeyDiff) -> str:
    """A short report grouped by module: counts and one example per group, not every key."""
    lines = []
    sections = [("missing from the checkpoint", [(k, "") for k in diff.missing]),
                ("unexpected in the checkpoint", [(k, "") for k in diff.unexpected]),
                ("with a different shape", [(k, f": model {list(m)}, checkpoint {list(c)}")
                                            for k, m, c in diff.mismatched])]
    for title, entries in sections:
        if not entries:
            continue
        lines.append(f"  {len(entries)} keys {title}:")
        groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for key, detail in entries:
            groups[_group(key)].append((key, detail))
        for group, items in groups.items():
            key, detail = items[0]
            lines.append(f"    {group:<28} {len(items):>4} keys, e.g. {key}{detail}")
    return "\n".join(lines)
