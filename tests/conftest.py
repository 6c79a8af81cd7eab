"""Session fixtures shared by the tests."""

from __future__ import annotations

import json
import signal

import pytest

from helpers import SMALL, SPEC_DIR


def pytest_configure(config):
    """A suite started in the background by a non-interactive shell (``bash -c 'pytest &'``, as
    some CI runners do) inherits SIGINT ignored, and then ``_thread.interrupt_main`` does
    nothing: the Ctrl-C tests would see their bench complete. Give it Python's own handler, as
    an interactive shell would."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def seg_spec() -> dict:
    return json.loads((SPEC_DIR / "seaformer_seg_checkpoint_keys.json").read_text())["variants"]


@pytest.fixture(scope="session")
def top_cls_spec() -> dict:
    return json.loads((SPEC_DIR / "topformer_and_cls_checkpoint_keys.json").read_text())



@pytest.fixture(scope="session")
def small_export(tmp_path_factory):
    """SeaFormer-T at 256x256 (the smallest size at which the synthetic weights give FP16 label
    agreement a meaningful margin): every format, precision and component. Exporting through
    ExecuTorch is slow, so every test that needs artifacts shares this one."""
    from seaformer_deploy.export.pipeline import ExportOptions, export

    out = tmp_path_factory.mktemp("models")
    return export(ExportOptions(model="seaformer-t", input_size=SMALL, out_root=out))


@pytest.fixture(scope="session")
def tiny_pte_export(tmp_path_factory):
    """SeaFormer-T at 64x64 as .pte FP32, every component, the default layout (NHWC edges): the
    smallest size, where the 1/64 context is one pixel, and one at which no tensor has
    C == H == W (at 256 the `shared` features are 32x32x32, the same shape in both layouts)."""
    from seaformer_deploy.export.pipeline import ExportOptions, export

    out = tmp_path_factory.mktemp("tiny")
    return export(ExportOptions(model="seaformer-t", input_size=(64, 64), out_root=out,
                                formats=("pte",), precisions=("fp32",)))
