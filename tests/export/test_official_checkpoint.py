"""A checkpoint in the official code base's format exports and passes parity."""

from __future__ import annotations

import collections

import numpy as np
import torch

from seaformer_deploy.export.pipeline import ExportOptions, export
from seaformer_deploy.export.weights import synthetic_model
from seaformer_deploy.models.checkpoint import sha256_file


def test_official_format_checkpoint_exports(tmp_path, seg_spec):
    trained = synthetic_model("seaformer-t", (64, 64), seed=7)
    state = trained.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == seg_spec["T"]["keys"]
    path = tmp_path / "seaformer_tiny_512x512_160k_1x16_ade.pth"
    torch.save({"meta": {"mmseg_version": "0.20.2", "CLASSES": tuple(f"c{i}" for i in range(150)),
                         "PALETTE": [[i, i, i] for i in range(150)], "seed": np.int64(0),
                         "config": "model = dict(type='EncoderDecoder')"},
                "state_dict": collections.OrderedDict(state)}, path)
    result = export(ExportOptions(model="seaformer-t", checkpoint=path, input_size=(64, 64),
                                  out_root=tmp_path / "models", precisions=("fp32",),
                                  components=False))
    manifest = result.manifest.to_dict()
    assert manifest["weights"] == {"source": "checkpoint", "path": str(path),
                                   "sha256": sha256_file(path), "entry": "state_dict"}
    assert manifest["model"]["class_names"][:2] == ["c0", "c1"]
    assert manifest["parity_passed"]
    for art in manifest["artifacts"]:
        assert art["parity"]["worst"]["psnr_db"] >= 60
