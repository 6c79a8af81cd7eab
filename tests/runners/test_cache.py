"""The runner cache is shared by every environment of the user (venvs, ExecuTorch versions) and
by benches that start together: builds take turns, and nobody's build is deleted in use."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

from seaformer_deploy.paths import STALE_DAYS
from seaformer_deploy.runners import native


def _hold_lock(cache, ready, release) -> None:
    os.environ["XDG_CACHE_HOME"] = str(cache)
    with native._build_lock():
        ready.set()
        release.wait(30)


def test_builds_take_turns(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        started = time.monotonic()
        threading.Timer(1.0, release.set).start()
        with native._build_lock():          # waits for the other process to let go
            waited = time.monotonic() - started
    finally:
        release.set()
        holder.join(30)
    assert waited >= 0.9


def _build_folder(root, name, age_days):
    folder = root / "runner" / name
    folder.mkdir(parents=True)
    (folder / "runner.json").write_text("{}")
    stamp = time.time() - age_days * 86400
    os.utime(folder, (stamp, stamp))
    return folder


def test_only_builds_unused_for_weeks_are_pruned(tmp_path):
    root = tmp_path
    current = _build_folder(root, "host-aaaa", 0)
    recent = _build_folder(root, "host-bbbb", STALE_DAYS - 1)   # another venv's, in use
    old = _build_folder(root, "host-cccc", STALE_DAYS + 1)
    other = _build_folder(root, "linux-arm64-dddd", STALE_DAYS + 1)  # another target
    staging = _build_folder(root, "host-eeee.tmp-123", STALE_DAYS + 1)
    native._prune(current, "host")
    assert current.exists() and recent.exists() and other.exists() and staging.exists()
    assert not old.exists()
