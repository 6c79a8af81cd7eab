"""Reading official checkpoints safely and loading them strictly.

Checkpoints are pickles, and unpickling can run arbitrary code. We load with
``torch.load(weights_only=True)`` and allow-list only the harmless globals real checkpoints carry:
mmseg's ``meta`` (class names, palette, config text, environment string, numpy scalars and arrays)
and timm's ``args`` (an ``argparse.Namespace``). Anything else is refused unless the user passes
``--trust-checkpoint``.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import codecs
import hashlib
import io
import itertools
import pickle
import pickletools
import re
import warnings
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
GET_A_CHECKPOINT = ("Pass the .pth file that torch.save wrote, e.g. an official SeaFormer or "
                    "TopFormer checkpoint (mmseg or timm format).")
# torch.save's legacy (non-zip) format opens with this number, pickled on its own.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
# Globals whose only use in a pickle is to run something: name them as such in the refusal.
_CODE_RUNNERS = re.compile(r"^(posix|nt|os|subprocess|pty|runpy|shutil|socket|sys|importlib"
                           r"|ctypes)\.|^builtins\.(exec|eval|compile|__import__|getattr|open)$")


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


def read_checkpoint(path: str | Path, trust: bool = False) -> Checkpoint:
    """Read a checkpoint file; raise ``UserError`` with an actionable message if we cannot."""
    path = Path(path)
    fmt = check_checkpoint_file(path)
    try:
        obj = _torch_load(path, trust)
    except pickle.UnpicklingError as exc:
        raise (_unreadable(path, exc) if trust else _refusal(path, fmt, exc)) from None
    except (ImportError, AttributeError) as exc:     # --trust-checkpoint: a class we lack
        raise UserError(f"checkpoint {path} needs Python code that is not installed here to be "
                        f"unpickled ({_detail(exc)}). Install the package it names, or save "
                        f"the state dict alone with torch.save where it loads.") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as exc:
        raise _unreadable(path, exc) from None
    state_dict, source_key = extract_state_dict(obj, path)
    meta = obj.get("meta") if isinstance(obj, Mapping) else None
    ckpt = Checkpoint(path, sha256_file(path), state_dict, source_key,
                      dict(meta) if isinstance(meta, Mapping) else {})
    _drop_training_only(ckpt)
    return ckpt


def check_checkpoint_file(path: Path) -> str:
    """Refuse a path that cannot hold a checkpoint, from its first bytes alone (nothing is
    unpickled): missing, a folder, empty, or a file of another kind. Returns its format."""
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.pth*"))[:3]
        inside = f" (it holds {', '.join(found)})" if found else ""
        raise UserError(f"checkpoint {path} is a folder{inside}, not a file. {GET_A_CHECKPOINT}")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist (or is not a file). {GET_A_CHECKPOINT}")
    if path.stat().st_size == 0:
        raise UserError(f"checkpoint {path} is empty (0 bytes): the download or copy did not "
                        f"finish. Download it again and compare its size and sha256 with the "
                        f"published ones.")
    return _checkpoint_format(path)


def _torch_load(path: Path, trust: bool) -> object:
    # torch warns about what it meets on the way (TorchScript archives, pickle protocols): our
    # own messages say what matters, and a warning would only clutter them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)


# --- What a file is, read statically: nothing in it is unpickled or run. ---

def _checkpoint_format(path: Path) -> str:
    """``zip`` or ``legacy`` (torch.save's two formats), or ``safetensors`` by name; any other
    file is refused here, saying what it is instead."""
    if path.suffix == ".safetensors":
        return "safetensors"                 # torch.load reads these itself
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04"):
        _check_zip_members(path)
        return "zip"
    if head.startswith(b"\x80"):             # a pickle: torch.save's legacy format opens so
        if _opens_with_legacy_magic(path):
            return "legacy"
        raise UserError(f"checkpoint {path} is a Python pickle, but not one torch.save wrote "
                        f"(it lacks PyTorch's header). If it comes from a source you trust, "
                        f"load it with pickle and save its state dict with torch.save.")
    raise UserError(f"checkpoint {path} is not a PyTorch checkpoint: it is "
                    f"{_describe(head)}. {GET_A_CHECKPOINT}")


def _check_zip_members(path: Path) -> None:
    """A zip is a checkpoint only if it holds torch.save's ``data.pkl`` (and is no TorchScript)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return                                # truncated or corrupt: torch.load says which
    if any(n.endswith("/constants.pkl") for n in names):
        raise UserError(f"checkpoint {path} is a TorchScript program (torch.jit.save), not a "
                        f"checkpoint. Load it with torch.jit.load where it was made and save "
                        f"its state_dict() with torch.save.")
    if not any(_is_data_pkl(n) for n in names):
        listed = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "") or "nothing"
        inner = [n for n in names if n.endswith((".pth", ".pt", ".pth.tar", ".ckpt"))]
        todo = f"Extract {inner[0]} from it and pass that." if inner else GET_A_CHECKPOINT
        raise UserError(f"checkpoint {path} is a zip archive but not a PyTorch checkpoint (no "
                        f"data.pkl; it holds {listed}). {todo}")


def _is_data_pkl(name: str) -> bool:
    return name == "data.pkl" or name.endswith("/data.pkl")


def _opens_with_legacy_magic(path: Path) -> bool:
    """The first pickle is the magic number alone: PROTO, (FRAME,) LONG1, STOP."""
    with open(path, "rb") as f:
        try:
            return any(op.name == "LONG1" and arg == LEGACY_MAGIC
                       for op, arg, _ in itertools.islice(pickletools.genops(f), 4))
        except (ValueError, EOFError):
            return False


def _describe(head: bytes) -> str:
    """A few words on what a file that is not a checkpoint looks like."""
    start = head.lstrip()[:40].lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return ("an HTML page (a failed download? some hosts answer a download link with a "
                "page: download the file itself)")
    if start.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file it points to (run `git lfs pull`)"
    if start[:1] in (b"{", b"["):
        return "a JSON file"
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head)   # may end mid-character
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "a text file"
    return f"a file of an unknown format (it starts with bytes {head[:8].hex(' ')})"


def _refusal(path: Path, fmt: str, exc: BaseException) -> UserError:
    """The weights-only load stopped: name the objects the file holds, or say it is damaged."""
    try:
        names = sorted(_pickled_globals(path, fmt) - _allowed_globals())
    except (ValueError, EOFError, StopIteration, zipfile.BadZipFile, OSError) as scan:
        # torch's complaint about a cut-off pickle names half a global: say what is wrong
        return _unreadable(path, ValueError(f"its pickle is cut short or garbled: {scan}"))
    if not names:
        return _unreadable(path, exc)
    runners = [n for n in names if _CODE_RUNNERS.search(n)]
    todo = (f"{', '.join(runners)} can run commands on this machine: the file looks malicious, "
            f"so do not load it with --trust-checkpoint unless you made it yourself."
            if runners else TRUST_HINT)
    return UserError(f"checkpoint {path} holds Python objects outside the safe allow-list: "
                     f"{', '.join(names)}. Loading them would let the file run code. {todo}")


def _pickled_globals(path: Path, fmt: str) -> set[str]:
    """Every global (``module.name``) the checkpoint's pickle refers to."""
    if fmt == "zip":
        with zipfile.ZipFile(path) as archive:
            data = archive.read(next(n for n in archive.namelist() if _is_data_pkl(n)))
        return _globals_in_pickle(io.BytesIO(data))
    with open(path, "rb") as f:
        for _ in range(3):        # legacy header pickles: magic number, version, system info
            for _ in pickletools.genops(f):
                pass
        return _globals_in_pickle(f)


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING",
               "BINSTRING", "SHORT_BINSTRING"}
_NOT_PUSHING = {"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "STOP"}


def _globals_in_pickle(stream: io.IOBase) -> set[str]:
    """Read the opcodes of one pickle (pickletools; nothing runs). Protocol 2 names a global in
    its GLOBAL opcode; protocol 4 pushes two strings (perhaps from the memo) for STACK_GLOBAL,
    so the strings on the stack are tracked just well enough to name it."""
    found: set[str] = set()
    pushed: list[object] = []
    memo: dict[int, object] = {}
    for op, arg, _ in pickletools.genops(stream):
        if op.name in ("GLOBAL", "INST"):
            found.add(_python3_name(*arg.split(" ", 1)))
        elif op.name == "STACK_GLOBAL" and len(pushed) >= 2:
            module, name = pushed[-2:]
            if isinstance(module, str) and isinstance(name, str):
                found.add(f"{module}.{name}")
        if op.name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = pushed[-1] if pushed else None
        elif op.name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(arg))
        elif op.name in _STRING_OPS:
            pushed.append(arg)
        elif op.name not in _NOT_PUSHING:
            pushed.append(None)
    return found


def _python3_name(module: str, name: str) -> str:
    """Protocol 2 pickles name Python 2 modules (``__builtin__.exec``); unpickling maps them to
    their Python 3 names, and so does this, as the allow-list is in those."""
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


def _allowed_globals() -> set[str]:
    """What the weights-only unpickler accepts: torch's defaults and our allow-list. The same
    private tables ``torch.serialization.get_unsafe_globals_in_checkpoint`` reads (it only
    handles zip checkpoints, so it cannot serve the legacy format)."""
    from torch import _weights_only_unpickler as wou

    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return set(wou._get_allowed_globals()) | set(wou._get_user_allowed_globals())


def _unreadable(path: Path, exc: BaseException) -> UserError:
    size = path.stat().st_size
    return UserError(f"cannot read checkpoint {path} ({size} bytes): the file is truncated, "
                     f"corrupt or not a PyTorch checkpoint ({_detail(exc)}). Download it "
                     f"again and compare its size and sha256 with the published ones.")


def _detail(exc: BaseException) -> str:
    """The informative sentence of a torch error, without its boilerplate: the weights-only
    unpickler's advice paragraphs, terminal escapes and C++ ``[enforce fail at ...]`` tags."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    text = found.group(1) if found else text
    text = re.sub(r"\[enforce fail at [^\]]*\]\s*\.?\s*", "", text).strip()
    text = text or type(exc).__name__
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
