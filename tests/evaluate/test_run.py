"""evaluate end to end on the tiny export: its numbers equal an independent reference (the
artifact run by ONNX Runtime directly, mmseg's steps, the metrics in plain NumPy) exactly, the
record says what ran on what, and bad input is refused before anything is written."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import seaformer_deploy as sd
from seaformer_deploy.errors import OptionError, UserError
from seaformer_deploy.evaluate import reference, run
from seaformer_deploy.evaluate.datasets import DatasetError
from seaformer_deploy.export import manifest as mf
from seaformer_deploy.export.records import OrtForm


@pytest.fixture(scope="module")
def ade_run(eval_export, make_ade, tmp_path_factory):
    root = make_ade(tmp_path_factory.mktemp("ade") / "ADEChallengeData2016")
    out = tmp_path_factory.mktemp("out") / "evaluation"
    return sd.evaluate(eval_export.folder, data=root, out=out), root


def independent_predictions(onnx_path: Path, root: Path, manifest) -> tuple[list, list]:
    """The ONNX artifact on ONNX Runtime, fed and read as mmseg's whole-image test does."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    norm = manifest.input.normalization
    mean, std = (np.array(norm[k], np.float32) for k in ("mean", "std"))
    truths, preds = [], []
    for image in sorted((root / "images" / "validation").glob("*.jpg")):
        rgb = np.asarray(Image.open(image).convert("RGB"))
        x = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None]
        if x.shape[-2:] != tuple(manifest.input.size):
            x = F.interpolate(x, size=tuple(manifest.input.size), mode="bilinear",
                              align_corners=False).round().clamp(0, 255)
        x = ((x[0].permute(1, 2, 0).to(torch.uint8).numpy().astype(np.float32) - mean) / std)
        (logits,) = session.run(None, {"image": x.transpose(2, 0, 1)[None].copy()})
        label = np.asarray(Image.open(root / "annotations" / "validation"
                                      / f"{image.stem}.png")).astype(np.int64)
        up = F.interpolate(torch.from_numpy(logits), size=label.shape, mode="bilinear",
                           align_corners=False)
        preds.append(up.argmax(1)[0].numpy())
        truths.append(np.where((label == 0) | (label == 255), 255, label - 1))
    return truths, preds


def test_numbers_equal_an_independent_numpy_reference_exactly(ade_run, eval_export,
                                                             reference_metrics):
    outcome, root = ade_run
    manifest = eval_export.manifest
    truths, preds = independent_predictions(eval_export.folder / "model.fp32.onnx", root,
                                            manifest)
    want = reference_metrics(truths, preds, manifest.model.num_classes)
    (onnx,) = [r for r in outcome.document["results"] if r["name"] == "model.fp32.onnx"]
    got = {k: v for k, v in onnx["labels"].items() if k != "confusion"}
    assert got == want
    written = json.loads((outcome.folder / "evaluation.json").read_text())
    assert written["results"] == json.loads(json.dumps(outcome.document["results"]))


def test_every_artifact_and_fp32_is_evaluated_and_agrees_with_fp32(ade_run):
    results = {r["name"]: r for r in ade_run[0].document["results"]}
    assert list(results) == ["pytorch.fp32", "model.fp32.onnx", "model.fp32.pte"]
    assert results["pytorch.fp32"]["vs_fp32"] is None
    for name in ("model.fp32.onnx", "model.fp32.pte"):         # the .pte takes NHWC input
        assert results[name]["vs_fp32"]["pixel_accuracy"] > 99.0, name
        assert results[name]["parity_passed"] is True
    pixels = results["pytorch.fp32"]["labels"]["pixels"]
    matrix = np.array(results["model.fp32.pte"]["labels"]["confusion"])
    assert matrix.shape == (150, 150) and matrix.sum() == pixels
    assert np.array(results["model.fp32.pte"]["vs_fp32"]["confusion"]).sum() == sum(
        h * w for h, w in ((64, 64), (48, 80), (90, 70)))      # every pixel, none ignored


def test_the_record_says_what_ran_on_what(ade_run, eval_export):
    outcome, root = ade_run
    doc = outcome.document
    folder = outcome.folder
    data = doc["dataset"]
    assert data["layout"] == "ade20k" and data["count"] == 3 and data["reduce_zero_label"]
    for entry in data["files"]:
        assert entry["image_sha256"] == mf.sha256_path(root / "images" / "validation"
                                                       / entry["image"])
        assert entry["label_sha256"] == mf.sha256_path(root / "annotations" / "validation"
                                                       / entry["label"])
    for r in doc["results"][1:]:
        assert r["sha256"] == mf.sha256_path(eval_export.folder / r["name"])
        assert (folder / r["plot"]).stat().st_size > 1000
    assert doc["reference"]["source"] == "synthetic" and "reproduces" in doc["reference"]["check"]
    assert doc["tools"]["onnxruntime"] == ort.__version__
    assert doc["procedure"]["ignore_index"] == 255 and "cv2" in doc["procedure"]["image_resize"]
    table = (folder / "evaluation.md").read_text()
    assert "| model.fp32.pte | " in table and "## IoU per class (vs labels" in table
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["evaluation.json", "evaluation.md"] + [r["plot"] for r in doc["results"]])


def test_images_alone_give_the_agreement_with_fp32(eval_export, ade, tmp_path):
    outcome = sd.evaluate(eval_export.folder, images=ade / "images", artifact="model.*.pte",
                          out=tmp_path / "e")
    (fp32, pte) = outcome.document["results"]
    assert outcome.document["dataset"]["layout"] == "images"
    assert fp32["labels"] is None and fp32["vs_fp32"] is None and "plot" not in fp32
    assert pte["name"] == "model.fp32.pte" and pte["labels"] is None
    assert pte["vs_fp32"]["miou"] > 90.0
    assert "vs PyTorch FP32" in (outcome.folder / "evaluation.md").read_text()


def test_bad_input_loses_nothing(eval_export, pairs, tmp_path):
    images, labels = pairs
    out = tmp_path / "kept"
    sd.evaluate(eval_export.folder, images=images, labels=labels, artifact="model.fp32.onnx",
                out=out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    label = np.asarray(Image.open(labels / "frame2.png")).copy()
    label[5, 5] = 151
    Image.fromarray(label).save(labels / "frame2.png")
    with pytest.raises(DatasetError, match="frame2.png holds label values 151"):
        sd.evaluate(eval_export.folder, images=images, labels=labels, out=out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "pairs"]   # no staging left


def test_an_edited_artifact_or_a_stray_checkpoint_is_refused(eval_export, ade, tmp_path):
    with pytest.raises(OptionError) as caught:
        sd.evaluate(eval_export.folder, data=ade, checkpoint=tmp_path / "x.pth",
                    out=tmp_path / "e")
    assert caught.value.field == "checkpoint" and "synthetic weights (seed 0)" in str(
        caught.value)
    copy_dir = tmp_path / "export"
    copy_dir.mkdir()
    for path in eval_export.folder.rglob("*"):
        if path.is_file():
            target = copy_dir / path.relative_to(eval_export.folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    with open(copy_dir / "model.fp32.pte", "ab") as f:
        f.write(b"\0")
    with pytest.raises(UserError, match=r"model.fp32.pte differs from the manifest's sha256"):
        sd.evaluate(copy_dir, data=ade, out=tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_weights_that_do_not_reproduce_the_export_are_refused(eval_export, ade_run):
    manifest = eval_export.manifest
    model = copy.deepcopy(reference._synthetic(manifest.model.name, tuple(manifest.input.size),
                                               0, manifest.model.num_classes))
    reference._check(model, manifest, eval_export.folder)                # the rebuilt: fine
    with torch.no_grad():
        model.decode_head.conv_seg.bias.add_(0.5)
    with pytest.raises(OptionError, match="does not reproduce the export's reference output"):
        reference._check(model, manifest, eval_export.folder)


def test_selection_takes_whole_models_and_their_ort_forms(eval_export):
    manifest = eval_export.manifest
    onnx = manifest.artifact("model.fp32.onnx")
    form = OrtForm("ort_format", "model.fp32.ort", "0" * 64, 10, onnx.parity)
    with_form = replace(manifest, artifacts=[replace(onnx, ort_forms=[form]),
                                             *manifest.artifacts[1:]])
    assert [a.path for a in run.select(with_form, ("model.*",))] == [
        "model.fp32.onnx", "model.fp32.pte", "model.fp32.ort"]
    assert [a.format for a in run.select(with_form, ("*.ort",))] == ["onnx"]   # ORT runs it
    with pytest.raises(OptionError, match=r"matches no whole-model artifact .* it has "
                                          r"model.fp32.onnx, model.fp32.pte") as caught:
        run.select(manifest, ("model.fp16.*",))
    assert caught.value.field == "artifact"


def test_an_output_folder_of_other_files_is_not_replaced(eval_export, ade, tmp_path):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(OptionError, match="holds files of its own and no evaluation") as caught:
        sd.evaluate(eval_export.folder, data=ade, out=keep)
    assert caught.value.field == "out" and (keep / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        sd.evaluate(eval_export.folder, data=ade, out=tmp_path / "file")
