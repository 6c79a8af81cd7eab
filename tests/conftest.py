"""Session fixtures shared by the tests."""

from __future__ import annotations

import json

import pytest

from helpers import SPEC_DIR


@pytest.fixture(scope="session")
def seg_spec() -> dict:
    return json.loads((SPEC_DIR / "seaformer_seg_checkpoint_keys.json").read_text())["variants"]


@pytest.fixture(scope="session")
def top_cls_spec() -> dict:
    return json.loads((SPEC_DIR / "topformer_and_cls_checkpoint_keys.json").read_text())
