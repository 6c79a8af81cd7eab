"""One small export shared by the export tests (exporting through ExecuTorch is slow)."""

from __future__ import annotations

import pytest

from seaformer_deploy.export.pipeline import ExportOptions, export

SMALL = (64, 64)


@pytest.fixture(scope="session")
def small_export(tmp_path_factory):
    """SeaFormer-T at 64x64: every format, precision and component, synthetic weights."""
    out = tmp_path_factory.mktemp("models")
    return export(ExportOptions(model="seaformer-t", input_size=SMALL, out_root=out))
