"""Synthetic weights: a cached build is the build, and the cache never serves a stale one."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from seaformer_deploy.export import weights
from seaformer_deploy.export.samples import sample_batch
from seaformer_deploy.paths import STALE_DAYS

SIZE = (64, 64)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "seaformer-deploy" / "weights"


def _seeded_only(name, size, seed, count, num_classes):
    """The build without its 10 s calibration: what the cache stores is the same kind of
    thing (a model's state dict), and only the first test needs the real build."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return weights.build(name, num_classes).eval()


@pytest.fixture
def builds(monkeypatch, request):
    """The arguments of every build (a cache hit adds none); a seeded-only build unless the
    test is marked ``real_build``."""
    calls = []
    run = (weights._synthetic_model if request.node.get_closest_marker("real_build")
           else _seeded_only)

    def counted(*args):
        calls.append(args)
        return run(*args)
    monkeypatch.setattr(weights, "_synthetic_model", counted)
    return calls


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not a.training and not b.training
    image = sample_batch(*SIZE, 1)
    with torch.no_grad():
        assert torch.equal(a(image), b(image))


@pytest.mark.real_build
def test_a_cached_build_is_bit_identical_and_skips_the_build(cache, builds):
    first = weights.synthetic_model("seaformer-t", SIZE)
    [entry] = cache.glob("*.pt")
    assert entry.name.startswith("seaformer-t-64x64-seed0-")
    second = weights.synthetic_model("seaformer-t", SIZE)
    assert len(builds) == 1
    _same(first, second)


def test_a_cache_hit_leaves_the_callers_random_state_alone(cache, builds):
    weights.synthetic_model("seaformer-t", SIZE)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    weights.synthetic_model("seaformer-t", SIZE)
    assert len(builds) == 1 and torch.equal(torch.rand(3), expected)


def test_other_arguments_or_code_are_other_entries(cache, builds, monkeypatch):
    weights.synthetic_model("seaformer-t", SIZE)
    weights.synthetic_model("seaformer-t", SIZE, seed=1)
    weights.synthetic_model("seaformer-t", SIZE, num_classes=19)
    monkeypatch.setattr(weights, "code_digest", lambda: "an edited checkout")
    weights.synthetic_model("seaformer-t", SIZE)
    assert len(builds) == 4 and len(list(cache.glob("*.pt"))) == 4


def test_a_damaged_entry_is_rebuilt_over(cache, builds):
    fresh = weights.synthetic_model("seaformer-t", SIZE)
    [entry] = cache.glob("*.pt")
    entry.write_bytes(entry.read_bytes()[:1000])            # truncated by a full disk
    _same(weights.synthetic_model("seaformer-t", SIZE), fresh)
    assert len(builds) == 2
    _same(weights.synthetic_model("seaformer-t", SIZE), fresh)
    assert len(builds) == 2                                  # and the rebuild was stored


def test_an_unwritable_cache_only_costs_a_rebuild(tmp_path, monkeypatch, builds):
    (tmp_path / "seaformer-deploy").write_text("a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    weights.synthetic_model("seaformer-t", SIZE)
    weights.synthetic_model("seaformer-t", SIZE)
    assert len(builds) == 2


def test_a_family_outside_the_package_is_never_cached(monkeypatch):
    """Its code is not in the key: an edit to it must not be served the old weights."""
    spec = weights.get_spec("seaformer-t")
    outside = dataclasses.replace(spec, synthetic_setup=lambda model: None)
    monkeypatch.setattr(weights, "get_spec", lambda name: outside)
    assert weights._cache_path("seaformer-t", SIZE, 0, 4, None) is None
    assert weights._cache_path("topformer-t", SIZE, 0, 4, None) is None
    monkeypatch.undo()
    assert weights._cache_path("topformer-t", SIZE, 0, 4, None) is not None


def test_entries_unused_for_two_weeks_are_dropped(cache, builds):
    weights.synthetic_model("seaformer-t", SIZE)
    [kept] = cache.glob("*.pt")
    old = cache / "seaformer-t-64x64-seed0-0000000000000000.pt"
    old.write_bytes(b"from another checkout")
    stale = kept.stat().st_mtime - (STALE_DAYS + 1) * 86400
    os.utime(old, (stale, stale))
    weights.synthetic_model("seaformer-t", SIZE, seed=3)     # a store prunes
    assert not old.exists() and kept.exists()
