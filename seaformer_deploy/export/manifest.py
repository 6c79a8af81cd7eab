"""The export manifest: what was exported, from what, with which tools, and how faithful it is.

Written as ``manifest.json`` next to the artifacts and validated against
``manifest.schema.json`` (JSON Schema) before it is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from ..errors import UserError
from .formats import with_format_enum
from .records import Manifest

SCHEMA_NAME = "seaformer-deploy/export-manifest"
SCHEMA_VERSION = 2       # 2: tensor records give the program's shape and its layout
MANIFEST = "manifest.json"
TOOLS = ("seaformer-deploy", "torch", "executorch", "onnx", "onnxruntime", "onnxscript",
         "onnxsim", "numpy")


def tool_versions() -> dict[str, str]:
    versions = {name: metadata.version(name) for name in TOOLS}
    versions["seaformer-deploy-code"] = code_digest()[:16]
    versions["python"] = platform.python_version()
    versions["platform"] = f"{platform.system()}-{platform.machine()}"
    return versions


def code_digest() -> str:
    """A digest of this package's code, so an edited checkout never reuses stale artifacts."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_path(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def cache_key(fields: dict) -> str:
    """A digest of everything that determines the artifacts' bytes and their checks."""
    return sha256_bytes(json.dumps(fields, sort_keys=True, default=str).encode())


def schema() -> dict:
    """The manifest's JSON schema, its format enum taken from the format registry."""
    return with_format_enum(json.loads(Path(__file__).with_name("manifest.schema.json")
                                       .read_text()))


def validate(manifest: dict) -> None:
    """Raise ``jsonschema.ValidationError`` if ``manifest`` does not follow the schema."""
    import jsonschema

    jsonschema.validate(manifest, schema())


class ManifestError(UserError):
    """An export folder whose manifest is missing, unreadable, off-schema or unsafe."""


def write(folder: Path, manifest: Manifest) -> None:
    """Check ``manifest`` against the schema and write it into ``folder`` atomically."""
    payload = manifest.to_dict()
    validate(payload)
    write_json(Path(folder) / MANIFEST, payload)


def read(folder: Path) -> Manifest:
    """The manifest in ``folder``, validated; a ManifestError says what is wrong with it."""
    import jsonschema

    path = Path(folder) / MANIFEST
    redo = "re-export it with `seaformer-deploy export` (--force to replace the folder)"
    if not path.is_file():
        what = "is not a folder" if not Path(folder).is_dir() else f"has no {MANIFEST}"
        raise ManifestError(f"{folder} {what}: pass an export folder made by `seaformer-deploy "
                            f"export`, or run the export first.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc}); {redo}.") from None
    old = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if type(old) is int and 1 <= old < SCHEMA_VERSION:
        raise ManifestError(f"{path} is a version-{old} manifest; this "
                            f"seaformer-deploy reads version {SCHEMA_VERSION} (which records "
                            f"each tensor's layout): {redo}.")
    try:
        validate(manifest)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ManifestError(f"{path} does not follow the manifest schema at {where}: "
                            f"{exc.message}; {redo}.") from None
    record = Manifest.from_dict(manifest)
    if unsafe := _unsafe_paths(record):
        raise ManifestError(f"{path} names files outside its folder ({', '.join(unsafe[:3])}): "
                            f"every path must be relative and stay inside the export folder; "
                            f"{redo}.")
    return record


def load(folder: Path) -> Manifest | None:
    """The manifest in ``folder``, or None if there is none or it is unreadable or invalid."""
    try:
        return read(folder)
    except ManifestError:
        return None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _unsafe_paths(manifest: Manifest) -> list[str]:
    """Paths that are absolute or climb out of the export folder."""
    paths = [path for path, _ in manifest.files()]
    paths += [file for art in manifest.artifacts for file in art.files()]
    return [p for p in paths if not _inside(p)]


def _inside(path: str) -> bool:
    parts = Path(path).parts
    return bool(parts) and not Path(path).is_absolute() and ".." not in parts and "\\" not in path


def write_json(path: Path, payload: dict) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp creates 0600; give the usual mode
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def artifacts_intact(folder: Path, manifest: Manifest) -> bool:
    """Every artifact, ORT form and tensor file listed is present with the recorded hash."""
    for name, sha256 in manifest.files():
        path = folder / name
        if not path.is_file() or sha256_path(path) != sha256:
            return False
    return True


class StagingDir:
    """A hidden sibling folder that becomes ``final`` only when everything in it is complete.

    Used as a context manager: on success call ``commit()``; on any exception (including
    KeyboardInterrupt) the staging folder is deleted, so an interrupted or failed export leaves
    neither half-written artifacts nor a stale manifest. A folder orphaned by a killed process
    (SIGKILL) is swept on the next export into the same parent.
    """

    PREFIX = ".staging-"

    def __init__(self, final: Path) -> None:
        self.final = final
        self.path = final.parent / f"{self.PREFIX}{final.name}-{os.getpid()}-{time.time_ns()}"

    def __enter__(self) -> StagingDir:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self._sweep()
        self.path.mkdir()
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def commit(self) -> None:
        """Swap the staging folder into place (the old folder, if any, is removed after)."""
        old = None
        if self.final.exists():
            old = self.final.parent / f"{self.PREFIX}old-{self.final.name}-{time.time_ns()}"
            os.replace(self.final, old)
        os.replace(self.path, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _sweep(self) -> None:
        for stale in self.final.parent.glob(f"{self.PREFIX}*"):
            pid = _pid_of(stale.name)
            if pid is None or not _alive(pid):
                shutil.rmtree(stale, ignore_errors=True)


def _pid_of(name: str) -> int | None:
    parts = name.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def command_line() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]]
