"""Which checkpoint the FP32 reference loads: the given or recorded file, with the recorded
sha256, else an error that says which file the export was made from."""

from __future__ import annotations

import pytest

from seaformer_deploy.errors import OptionError
from seaformer_deploy.evaluate.reference import _checkpoint
from seaformer_deploy.export import manifest as mf


@pytest.fixture
def recorded(tmp_path):
    path = tmp_path / "seaformer_tiny_ade.pth"
    path.write_bytes(b"weights")
    return {"source": "checkpoint", "path": str(path), "sha256": mf.sha256_path(path)}


def test_the_recorded_checkpoint_is_used_when_still_there(recorded, tmp_path):
    assert str(_checkpoint(recorded, None)) == recorded["path"]
    moved = tmp_path / "moved.pth"
    moved.write_bytes(b"weights")
    assert _checkpoint(recorded, moved) == moved                 # same bytes elsewhere


def test_another_or_a_missing_checkpoint_is_refused(recorded, tmp_path):
    other = tmp_path / "other.pth"
    other.write_bytes(b"other weights")
    with pytest.raises(OptionError, match=r"other.pth has sha256 .* but the export was made "
                                          r"from") as caught:
        _checkpoint(recorded, other)
    assert caught.value.field == "checkpoint"
    with pytest.raises(OptionError, match="no such file"):
        _checkpoint(recorded, tmp_path / "nowhere.pth")
    (tmp_path / "seaformer_tiny_ade.pth").unlink()
    with pytest.raises(OptionError, match=r"made from the checkpoint .*seaformer_tiny_ade.pth "
                                          r".* no longer there: pass it with checkpoint PATH"):
        _checkpoint(recorded, None)
