"""One small export shared by the export tests (exporting through ExecuTorch is slow)."""

from __future__ import annotations

import pytest

from seaformer_deploy.export.pipeline import ExportOptions, export

SMALL = (256, 256)


@pytest.fixture(scope="session")
def small_export(tmp_path_factory):
    """SeaFormer-T at 256x256 (the smallest size at which the synthetic weights give FP16 label
    agreement a meaningful margin): every format, precision and component."""
    out = tmp_path_factory.mktemp("models")
    return export(ExportOptions(model="seaformer-t", input_size=SMALL, out_root=out))
