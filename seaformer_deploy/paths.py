"""Where files go: the user's cache (runner builds, seeded weights), and output folders checked
before work starts, so a long export or bench never fails at the end for want of a place to
write."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from .errors import UserError


STALE_DAYS = 14         # a cache entry (runner build, seeded weights) unused this long is dropped


def cache_root() -> Path:
    """The user's cache, never the package folder nor the current one: ``$XDG_CACHE_HOME``
    when set to an absolute path (the XDG spec ignores relative ones), else ``~/.cache``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / "seaformer-deploy"


def unused_for_long(path: Path) -> bool:
    """Has ``path`` gone ``STALE_DAYS`` without use (its mtime, which a cache hit touches)?"""
    return path.stat().st_mtime < time.time() - STALE_DAYS * 86400


def check_writable_folder(folder: Path, option: str) -> None:
    """Refuse a folder that cannot take files, without creating anything: a file, a path
    under a file, a folder that does not take files. Permission bits do not stop root, so
    writability is tested by creating and removing a file in the nearest existing folder."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {folder} is a file, not a folder: pass a folder (it is "
                        f"created if missing).")
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise UserError(f"{option} {folder} cannot be created: {existing} is a file, not a "
                        f"folder. Pass a folder path that does not go through a file.")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        what = "cannot be written" if existing == folder else f"cannot be created in {existing}"
        raise UserError(f"{option} {folder} {what} ({exc.strerror or exc}): pass a folder you "
                        f"can write to.") from None
