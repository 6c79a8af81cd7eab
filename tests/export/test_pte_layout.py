"""NHWC program edges: the wrong layout is an error, the right one is exact and costs nothing."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from seaformer_deploy.export import manifest as mf
from seaformer_deploy.export import pte_export
from seaformer_deploy.export.layouts import ambiguous, from_layout, reference_shape
from seaformer_deploy.export.parity import device_parity
from seaformer_deploy.export.pipeline import ExportOptions, export
from seaformer_deploy.export.runtimes import InputShapeError, run_pte
from seaformer_deploy.export.pte_layout import (NHWC_TO_NCHW, NHWCInterface,
                                                inverse_transposes_cancelled, to_nhwc)


class TwoInTwoOut(nn.Module):
    """A component's shape: an image and a feature map in; a feature that is both an output
    and read further on (the output side's other-readers case), and logits out."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = nn.Conv2d(8, 5, 1)

    def forward(self, image: torch.Tensor, feature: torch.Tensor):
        shared = torch.relu(self.stem(image)) + feature
        return shared, self.head(shared)


@pytest.fixture(scope="module")
def programs():
    torch.manual_seed(0)
    body = TwoInTwoOut().eval()
    nchw = [torch.randn(1, 3, 32, 48), torch.randn(1, 8, 16, 24)]
    example = [to_nhwc(t) for t in nchw]
    plain, _ = pte_export.export_pte(NHWCInterface(body).eval(), example)
    with inverse_transposes_cancelled() as removed:
        cancelled, stats = pte_export.export_pte(NHWCInterface(body).eval(), example)
    with torch.no_grad():
        expected = body(*nchw)
    return {"plain": plain, "cancelled": cancelled, "removed": removed, "stats": stats,
            "nchw": nchw, "expected": expected}


def _method(data: bytes):
    from executorch.runtime import Runtime

    return Runtime.get().load_program(data).load_method("forward")


def test_every_boundary_transpose_pair_is_removed(programs):
    assert programs["stats"]["partitions"] == 1 and not programs["stats"]["non_delegated_ops"]
    assert programs["removed"] == [4]        # two inputs and two outputs, a pair each


def test_the_right_layout_matches_pytorch_bit_for_bit_across_the_rewrite(programs):
    inputs = [to_nhwc(t) for t in programs["nchw"]]
    plain = _method(programs["plain"]).execute(inputs)
    cancelled = _method(programs["cancelled"]).execute(inputs)
    for got, same, want in zip(cancelled, plain, programs["expected"], strict=True):
        assert tuple(got.shape) == tuple(want.permute(0, 2, 3, 1).shape)
        assert torch.equal(got, same)
        torch.testing.assert_close(got.permute(NHWC_TO_NCHW), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("wrong", ["nchw", "nchw channels-last", "nhwc bytes in nchw shape"])
def test_a_wrong_layout_is_an_error(programs, which, wrong):
    good = [to_nhwc(t) for t in programs["nchw"]]
    tensor = programs["nchw"][which]
    bad = {"nchw": tensor, "nchw channels-last": tensor.to(memory_format=torch.channels_last),
           "nhwc bytes in nchw shape": to_nhwc(tensor).reshape(tensor.shape)}[wrong]
    inputs = [bad if i == which else t for i, t in enumerate(good)]
    with pytest.raises(RuntimeError, match="set_inputs"):
        _method(programs["cancelled"]).execute(inputs)


def test_the_serialisation_hook_still_applies_with_the_pinned_executorch():
    """Drift detector: the hook replaces ``xnnpack_preprocess.serialize_xnnpack_binary``, which
    ExecuTorch 1.5.1's XNNPACK backend looks up at every lowering. Should a release bind it
    elsewhere, no pair would be removed and NHWC edges would cost four transposes again."""
    import executorch.backends.xnnpack.xnnpack_preprocess as preprocess

    conv = nn.Conv2d(3, 4, 3, padding=1).eval()
    with inverse_transposes_cancelled() as removed:
        _, stats = pte_export.export_pte(NHWCInterface(conv).eval(), [torch.zeros(1, 8, 8, 3)])
    assert stats["partitions"] == 1
    assert removed == [2], f"executorch {pte_export.executorch_version()}: hook missed"
    assert preprocess.serialize_xnnpack_binary.__name__ == "serialize_xnnpack_binary"  # restored


# SeaFormer-T at 64x64, every unit exported with the default layout (conftest.tiny_pte_export).

def _arts(export):
    return {a["path"]: a for a in export.manifest.to_dict()["artifacts"]}


def _reference_shapes(export) -> dict[str, list[int]]:
    """Each named tensor's PyTorch (NCHW) shape, from the manifest's component records."""
    comps = export.manifest.to_dict()["components"]
    return {t["name"]: t["shape"] for c in comps for t in [*c["inputs"], *c["outputs"]]}


def test_records_give_the_programs_nhwc_shapes_layouts_and_files(tiny_pte_export):
    from executorch.runtime import Runtime

    folder, reference = tiny_pte_export.folder, _reference_shapes(tiny_pte_export)
    for path, art in _arts(tiny_pte_export).items():
        meta = Runtime.get().load_program(folder / path).load_method("forward").metadata
        for i, t in enumerate(art["inputs"]):
            n, c, h, w = reference[t["name"]]
            assert (t["layout"], t["shape"], t["dim_order"]) == ("NHWC", [n, h, w, c],
                                                               [0, 1, 2, 3]), (path, t)
            assert list(meta.input_tensor_meta(i).sizes()) == t["shape"], (path, t)
            assert not ambiguous(t["shape"], t["layout"]), "the wrong-layout tests would pass"
            stored = np.fromfile(folder / t["file"], dtype=t["dtype"]).reshape(t["shape"])
            nchw = np.fromfile(folder / f"tensors/{t['name']}.{t['dtype']}.bin", t["dtype"])
            assert np.array_equal(from_layout(stored, "NHWC"), nchw.reshape(n, c, h, w))
        for t in art["outputs"]:
            assert t["layout"] == "NHWC" and t["file"].endswith(".nhwc.bin"), (path, t)
            assert reference_shape(t["shape"], t["layout"]) == reference[t["name"]]
        assert art["executorch"]["cancelled_transposes"] == [len(art["inputs"])
                                                             + len(art["outputs"])], path
        assert art["executorch"]["partitions"] == 1 and not art["executorch"]["non_delegated_ops"]


@pytest.mark.parametrize("path", ["model.fp32.pte", "context.fp32.pte", "head.fp32.pte"])
def test_an_nchw_tensor_is_an_error_never_a_wrong_answer(tiny_pte_export, path):
    """The mistake the old channels-last dim order let through: a contiguous NCHW tensor."""
    from executorch.runtime import Runtime

    art, folder = _arts(tiny_pte_export)[path], tiny_pte_export.folder
    good = [np.fromfile(folder / t["file"], t["dtype"]).reshape(t["shape"]) for t in art["inputs"]]
    expected, _ = run_pte(folder / path, [good], [t["layout"] for t in art["inputs"]])
    refs = [np.fromfile(folder / t["file"], "float32").reshape(t["shape"]) for t in art["outputs"]]
    for got, ref in zip(expected[0], refs, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3)       # the right call works
    for i, t in enumerate(art["inputs"]):
        bad = [from_layout(a, "NHWC") if j == i else a for j, a in enumerate(good)]
        method = Runtime.get().load_program(folder / path).load_method("forward")
        with pytest.raises(RuntimeError):
            method.execute([torch.from_numpy(a) for a in bad])
        shape = tuple(t["shape"])
        with pytest.raises(InputShapeError, match=rf"takes {re.escape(str(shape))} in NHWC "):
            run_pte(folder / path, [bad])                       # layout guessed from the shape


def test_host_and_device_parity_compare_in_pytorchs_order(tiny_pte_export):
    """The native runner hands back the program's NHWC outputs; device parity converts them."""
    art, folder = _arts(tiny_pte_export)["model.fp32.pte"], tiny_pte_export.folder
    assert art["parity"]["passed"] and art["parity"]["worst"]["psnr_db"] > 100
    inputs = [np.fromfile(folder / t["file"], t["dtype"]).reshape(t["shape"])
              for t in art["inputs"]]
    outputs, _ = run_pte(folder / art["path"], [inputs])
    record = tiny_pte_export.manifest.artifact("model.fp32.pte")
    parity = device_parity(record, outputs[0], folder)
    assert parity.passed and parity.worst.psnr_db > 100
    with pytest.raises(ValueError, match="differs from the reference"):
        device_parity(record, [from_layout(o, "NHWC") for o in outputs[0]], folder)
    chains = tiny_pte_export.manifest.to_dict()["chains"]
    assert [c["parity"]["passed"] for c in chains] == [True]


def test_fp32_io_casts_stay_outside_the_nhwc_interface(tmp_path):
    result = export(ExportOptions(model="seaformer-t", input_size=(64, 64), out_root=tmp_path,
                                  formats=("pte",), precisions=("fp16",), components=False,
                                  fp32_io=True, parity_gate=False))
    (art,) = result.manifest.to_dict()["artifacts"]
    et = art["executorch"]
    assert et["partitions"] == 1 and result.warnings == []     # no compute op outside
    assert et["cancelled_transposes"] == [2]
    assert [(t["dtype"], t["layout"]) for t in [*art["inputs"], *art["outputs"]]] == [
        ("float32", "NHWC"), ("float32", "NHWC")]


def test_a_version_1_manifest_asks_for_a_re_export(tiny_pte_export, tmp_path):
    old = json.loads((tiny_pte_export.folder / mf.MANIFEST).read_text())
    old["schema_version"] = 1
    (tmp_path / mf.MANIFEST).write_text(json.dumps(old))
    with pytest.raises(mf.ManifestError, match="version-1 manifest.*re-export it"):
        mf.read(tmp_path)


@pytest.fixture(scope="module")
def int8_programs():
    """TwoInTwoOut in INT8 (PT2E, per-tensor activations): a quantize (XNNPACK Convert) sits
    between each input's NHWC -> NCHW transpose and XNNPACK's NCHW -> NHWC one."""
    from seaformer_deploy.export.quantize import pt2e_quantized

    torch.manual_seed(0)
    nchw = [torch.randn(1, 3, 32, 48), torch.randn(1, 8, 16, 24)]
    example = [to_nhwc(t) for t in nchw]
    quantized = pt2e_quantized(NHWCInterface(TwoInTwoOut().eval()).eval(), example, [example])
    plain, _ = pte_export.export_pte(quantized, example)
    with inverse_transposes_cancelled() as removed:
        cancelled, stats = pte_export.export_pte(quantized, example)
    return {"plain": plain, "cancelled": cancelled, "removed": removed, "stats": stats,
            "inputs": example}


def test_transposes_around_an_elementwise_operator_cancel_bit_for_bit(int8_programs):
    assert int8_programs["stats"]["partitions"] == 1
    assert int8_programs["removed"] == [4]       # each input's and output's pair
    inputs = int8_programs["inputs"]
    plain = _method(int8_programs["plain"]).execute(inputs)
    cancelled = _method(int8_programs["cancelled"]).execute(inputs)
    for got, same in zip(cancelled, plain, strict=True):
        assert got.shape == same.shape and torch.equal(got, same)


def test_a_per_channel_value_is_not_moved_across_a_transpose():
    """The sandwich rule's type check: a per-channel quantization names a dimension."""
    from executorch.backends.xnnpack.serialization.xnnpack_graph_schema import (
        PerChannelQuant, PerTensorQuant, XNNDatatype, XNNQuantizedTensorValue, XNNTensorValue)

    from seaformer_deploy.export.pte_layout import _same_type

    def value(datatype, quant=None):
        tensor = XNNTensorValue(datatype, 4, [1, 2, 3, 4], 0, 0, 0, 0)
        return tensor if quant is None else XNNQuantizedTensorValue(tensor, quant)

    qint8 = XNNDatatype.xnn_datatype_qint8
    assert _same_type(value(qint8, PerTensorQuant(0.1, 3)), value(qint8, PerTensorQuant(0.1, 3)))
    assert not _same_type(value(qint8, PerTensorQuant(0.1, 3)),
                          value(qint8, PerTensorQuant(0.2, 3)))
    channels = PerChannelQuant([0.1, 0.2], 1)
    assert not _same_type(value(qint8, channels), value(qint8, channels))
    fp32 = XNNDatatype.xnn_datatype_fp32
    assert _same_type(value(fp32), value(fp32)) and not _same_type(value(fp32), value(qint8))
