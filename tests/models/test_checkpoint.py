"""Checkpoint formats, strict loading, and refusing what is unsafe or wrong."""

from __future__ import annotations

import argparse
import collections
import datetime
import warnings

import numpy as np
import pytest
import torch

from helpers import randomize
from seaformer_deploy.errors import UserError
from seaformer_deploy.models import create
from seaformer_deploy.models.checkpoint import read_checkpoint
from seaformer_deploy.models.registry import build

CITYSCAPES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
              "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
              "bus", "train", "motorcycle", "bicycle")


def mmseg_meta(classes=CITYSCAPES) -> dict:
    """What mmseg 0.x's runner writes into ``meta``."""
    return {
        "mmseg_version": "0.20.2+8b7e1f0", "mmcv_version": "1.4.0",
        "config": "norm_cfg = dict(type='SyncBN', requires_grad=True)\nmodel = dict(...)\n",
        "CLASSES": classes, "PALETTE": [[128, 64, 128]] * len(classes),
        "env_info": "sys.platform: linux\nPython: 3.8.12\nCUDA available: True\n",
        "seed": np.int64(1234), "exp_name": "seaformer_small_1024x512_160k_4x8_city.py",
        "epoch": 1, "iter": 160000, "time": "Thu Mar  2 10:01:02 2023",
        "hook_msgs": {"last_ckpt": "work_dirs/x/iter_160000.pth", "best_score": np.float64(0.716),
                      "best_ckpt": "work_dirs/x/best_mIoU.pth"},
        "dataset_stats": np.array([0.485, 0.456, 0.406], dtype=np.float32),
    }


@pytest.fixture(scope="module")
def weights():
    return randomize(build("seaformer-t", num_classes=19), seed=5).state_dict()


def _same_weights(model, state_dict) -> bool:
    return all(torch.equal(model.state_dict()[k], v) for k, v in state_dict.items())


def test_mmseg_checkpoint_round_trip(tmp_path, weights):
    path = tmp_path / "seaformer_t_city.pth"
    torch.save({"meta": mmseg_meta(), "state_dict": collections.OrderedDict(weights),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.00025, "momentum": 0.9}]}},
               path)
    model = create("seaformer-t", checkpoint=path)
    assert model.num_classes == 19                       # inferred from conv_seg
    assert _same_weights(model, weights)
    assert model.checkpoint.class_names == list(CITYSCAPES)
    assert model.checkpoint.source_key == "state_dict"
    assert len(model.checkpoint.sha256) == 64


def test_timm_checkpoint_prefers_the_ema_weights(tmp_path):
    ema = randomize(build("seaformer-t-cls"), seed=1).state_dict()
    raw = randomize(build("seaformer-t-cls"), seed=2).state_dict()
    path = tmp_path / "seaformer_t_cls.pth.tar"
    torch.save({"epoch": 599, "arch": "SeaFormer_T", "state_dict": raw, "state_dict_ema": ema,
                "args": argparse.Namespace(model="SeaFormer_T", lr=0.064, epochs=600),
                "version": 2, "metric": 67.9}, path)
    model = create("seaformer-t-cls", checkpoint=path)
    assert model.checkpoint.source_key == "state_dict_ema"
    assert _same_weights(model, ema)


def test_dataparallel_prefixes_are_stripped(tmp_path, weights):
    path = tmp_path / "dp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in weights.items()}}, path)
    assert _same_weights(create("seaformer-t", checkpoint=path), weights)


def test_bare_and_model_key_dicts(tmp_path, weights):
    torch.save(weights, tmp_path / "bare.pth")
    torch.save({"model": weights}, tmp_path / "model.pth")
    bare = create("seaformer-t", checkpoint=tmp_path / "bare.pth")
    assert bare.checkpoint.source_key == "<bare dict>"
    assert create("seaformer-t", checkpoint=tmp_path / "model.pth").checkpoint.source_key == "model"


def test_auxiliary_head_is_ignored(tmp_path, weights):
    extra = dict(weights, **{"auxiliary_head.conv_seg.weight": torch.zeros(19, 32, 1, 1)})
    torch.save({"state_dict": extra}, tmp_path / "aux.pth")
    ckpt = read_checkpoint(tmp_path / "aux.pth")
    assert "auxiliary_head.conv_seg.weight" not in ckpt.state_dict and ckpt.notes


def test_truncated_file_is_a_clear_error(tmp_path, weights):
    good = tmp_path / "good.pth"
    torch.save({"state_dict": weights}, good)
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(UserError, match="truncated, corrupt or not a PyTorch checkpoint"):
        create("seaformer-t", checkpoint=bad)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        create("seaformer-t", checkpoint=tmp_path / "nope.pth")


def test_checkpoint_of_another_variant_names_it(tmp_path):
    torch.save({"state_dict": build("seaformer-s").state_dict()}, tmp_path / "s.pth")
    with pytest.raises(UserError) as err:
        create("seaformer-t", checkpoint=tmp_path / "s.pth")
    text = str(err.value)
    assert "does not fit seaformer-t" in text and "--variant S" in text
    assert "backbone.trans1" in text and len(text.splitlines()) < 25   # grouped, not 800 lines


def test_class_count_conflict(tmp_path, weights):
    torch.save({"state_dict": weights}, tmp_path / "c19.pth")
    with pytest.raises(UserError, match="trained for 19 classes"):
        create("seaformer-t", num_classes=150, checkpoint=tmp_path / "c19.pth")


class _Payload:
    """Unpickling this runs ``exec``: writes a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


def test_pickled_callable_is_refused_and_never_runs(tmp_path, weights):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": weights, "meta": {"CLASSES": _Payload(marker)}}, path)
    with pytest.raises(UserError, match="builtins.exec") as err:
        create("seaformer-t", checkpoint=path)
    assert "--trust-checkpoint" in str(err.value)
    assert not marker.exists()
    # The payload is live: an unrestricted load does run it (so the check above can fail).
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"


def test_trust_checkpoint_loads_other_globals(tmp_path, weights):
    path = tmp_path / "dated.pth"
    torch.save({"state_dict": weights, "meta": {"date": datetime.date(2023, 3, 2)}}, path)
    with pytest.raises(UserError, match="datetime.date"):
        create("seaformer-t", checkpoint=path)
    model = create("seaformer-t", checkpoint=path, trust_checkpoint=True)
    assert model.checkpoint.meta["date"] == datetime.date(2023, 3, 2)


class _Shell:
    """Unpickling this runs ``os.system``: a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("legacy,protocol", [(True, 2), (True, 4), (False, 2), (False, 4)],
                         ids=["legacy", "legacy-protocol-4", "zip", "zip-protocol-4"])
def test_a_shell_payload_is_named_and_never_runs(tmp_path, weights, legacy, protocol, capfd):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pth"
    torch.save({"state_dict": weights, "meta": {"CLASSES": _Shell(marker)}}, path,
               _use_new_zipfile_serialization=not legacy, pickle_protocol=protocol)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UserError) as err:
            read_checkpoint(path)
    text = str(err.value)
    assert "holds Python objects outside the safe allow-list: posix.system" in text
    assert "can run commands" in text and "Weights only load failed" not in text
    assert not marker.exists()
    assert not caught, [str(w.message) for w in caught]     # torch warns about protocol 4
    assert capfd.readouterr().err == ""


def test_a_zip_that_is_no_checkpoint_says_so(tmp_path):
    import zipfile

    path = tmp_path / "weights.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("seaformer/notes.txt", "hello")
        archive.writestr("seaformer/seaformer_t.pth", b"")
    with pytest.raises(UserError) as err:
        read_checkpoint(path)
    text = str(err.value)
    assert "is a zip archive but not a PyTorch checkpoint" in text and "( )" not in text
    assert "Extract seaformer/seaformer_t.pth from it" in text


@pytest.mark.parametrize("content,what", [
    (b'{"state_dict": {}}', "a JSON file"),
    (b"<!DOCTYPE html><html><body>Sign in</body></html>", "an HTML page"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n", "Git LFS pointer"),
    (b"\x00\x01\x02garbage", "unknown format"),
])
def test_other_files_say_what_they_are(tmp_path, content, what):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(UserError, match="is not a PyTorch checkpoint: it is") as err:
        read_checkpoint(path)
    assert what in str(err.value)


def test_empty_and_folder_paths(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(UserError, match=r"is empty \(0 bytes\)"):
        read_checkpoint(tmp_path / "empty.pth")
    with pytest.raises(UserError, match="is a folder .*empty.pth.*, not a file"):
        read_checkpoint(tmp_path)


def test_truncated_legacy_file_is_called_truncated(tmp_path, weights):
    good = tmp_path / "legacy.pth"
    torch.save({"state_dict": weights}, good, _use_new_zipfile_serialization=False)
    assert read_checkpoint(good).state_dict.keys() == weights.keys()    # the format still loads
    bad = tmp_path / "cut.pth"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(UserError, match="truncated, corrupt") as err:
        read_checkpoint(bad)
    assert "allow-list" not in str(err.value)
