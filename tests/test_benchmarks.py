"""The benchmark scripts run end to end at a small size and write what they print (their numbers
are not checked: speed targets live in the scripts' output, never in timed tests)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> None:
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *args],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_fast_artifacts_compares_every_candidate(tmp_path):
    out = tmp_path / "fast.json"
    _run("fast_artifacts.py", "--model", "seaformer-t", "--input-size", "64x64", "--rounds", "1",
         "--iterations", "3", "--models-dir", str(tmp_path / "models"), "--json", str(out))
    result = json.loads(out.read_text())
    assert set(result["medians_ms"]) == {"eager", "official", "ours.onnx", "naive.pte",
                                         "ours.pte", "int8.onnx", "int8.pte", "floor"}
    assert set(result["int8_parity"]) == {"model.int8.onnx", "model.int8.pte"}
    assert all(v > 0 for v in result["medians_ms"].values())
    assert result["ours_pte_delegation"] == {"partitions": 1, "outside": {}}
    assert result["naive_pte_partitions"] > 1


def test_layer_profile_covers_every_block(tmp_path):
    out = tmp_path / "profile.json"
    _run("layer_profile.py", "--model", "seaformer-t", "--input-size", "64x64",
         "--iterations", "3", "--limit", "3", "--json", str(out))
    result = json.loads(out.read_text())
    names = result["found"]
    # SeaFormer-T: stem conv, 9 inverted residuals, 4 transformer blocks, 2 fusion blocks and
    # the head's two layers; nothing profiled twice (no block inside another).
    assert names[0] == "backbone.smb1.stem_block" and names[-1] == "decode_head.conv_seg"
    assert sum(".layer" in n for n in names) == 9
    assert sum("transformer_blocks" in n for n in names) == 4
    assert sum(".fuse" in n for n in names) == 2 and len(names) == 18
    # Each block profiled is exported twice; three of them are enough to test the profiling.
    assert [b["block"] for b in result["blocks"]] == names[:3]
    assert all(b["onnx_ms"] > 0 and b["pte_ms"] > 0 and b["gflop"] > 0 for b in result["blocks"])
    assert result["whole_ms"]["onnx"] > 0 and result["whole_ms"]["pte"] > 0


def test_int8_trained_trains_exports_and_evaluates(tmp_path):
    from PIL import Image

    from seaformer_deploy.models import create

    out = tmp_path / "int8.json"
    _run("int8_trained.py", str(tmp_path), "--models", "seaformer-t", "--size", "64",
         "--steps", "8", "--limit", "2", "--formats", "onnx", "--json", str(out))
    model = create("seaformer-t", checkpoint=tmp_path / "seaformer-t.pth")     # strict keys
    assert model.num_classes == 6
    assert model.checkpoint.class_names[:2] == ["sky", "building"]
    meta = model.checkpoint.meta
    assert meta["steps"] == 8 and meta["final_loss"] < math.log(6)    # below chance: it learned
    images = sorted(p.name for p in (tmp_path / "heldout" / "images").iterdir())
    labels = sorted(p.name for p in (tmp_path / "heldout" / "labels").iterdir())
    assert images == labels and len(images) == 16
    assert len(list((tmp_path / "calibration" / "images").iterdir())) == 32
    with Image.open(tmp_path / "heldout" / "labels" / labels[0]) as label:
        assert label.mode == "L" and max(label.getdata()) <= 5
    (result,) = json.loads(out.read_text())["results"]
    # the .pte's INT8 lowering would take a minute; the script's plumbing is the same
    assert set(result["artifacts"]) == {"model.fp32.onnx", "model.int8.onnx"}
    fp32 = result["artifacts"]["model.fp32.onnx"]
    assert fp32["heldout_miou_vs_fp32"] == 100.0
    assert fp32["heldout_miou"] == result["pytorch_fp32_heldout_miou"]


def test_int8_flips_measures_where_labels_flip(tmp_path):
    out = tmp_path / "flips.json"
    _run("int8_flips.py", "--model", "seaformer-t", "--size", "64", "--json", str(out))
    seeded = json.loads(out.read_text())["results"]["seeded"]
    assert seeded["map_pixels"] == 8 * 8 and seeded["regions_per_image"] >= 1
    assert 0 <= seeded["flipped_near_pct"] <= 100 and 0 < seeded["label_agreement_pct"] <= 100
    assert seeded["near_boundary_pct"] > 0            # ten classes on an 8x8 map
