"""Output folders checked before work starts, so a long export or bench never fails at the end
for want of a place to write."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UserError


def ensure_writable_folder(folder: Path, option: str) -> Path:
    """Create ``folder`` if needed and prove it takes a file (mode bits do not stop root, so
    a real file is written and removed); a clear error otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {folder} is a file, not a folder: pass a folder (it is "
                        f"created if missing).")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{option} {folder} cannot be written ({exc.strerror or exc}): pass a "
                        f"folder you can write to.") from None
    return folder
