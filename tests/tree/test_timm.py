"""Real timm models as TreeNet bases (issue 31): offered split points build, reproduce the base in eval mode
with init="pretrained" and train a step. timm imports beside the CPU torch when a stub ``torchvision``
(tests/tree/tv_stub) comes first on ``sys.path``; the stub is put there by this module only. Skipped when timm
is not installed (CI: ``pip install --no-deps timm==1.0.31 huggingface_hub``)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch
from test_zoo import check_every_point, trained_like

from mheads.tree import TreeNet, fused_nodes, split_points

STUB = str(Path(__file__).parent / "tv_stub")


def _import_timm():
    try:
        import torchvision  # noqa: F401  a real one is fine too
    except ImportError:
        sys.path.insert(0, STUB)
    try:
        logging.getLogger("timm").setLevel(logging.ERROR)
        import timm
    except Exception as err:  # not installed, or it needs more than the stub gives
        return None, f"timm is not importable ({type(err).__name__}: {err})"
    finally:
        if STUB in sys.path:
            sys.path.remove(STUB)
    return timm, ""


timm, WHY = _import_timm()
pytestmark = pytest.mark.skipif(timm is None, reason=WHY or "timm")

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
# timm's own small test configurations, and the named models at small widths or inputs
TEST_MODELS = ["test_resnet", "test_convnext", "test_efficientnet", "test_vit"]
NAMED = {
    "resnet18": {},
    "efficientnet_b0": {},
    "convnext_atto": {"dims": (8, 16, 24, 32), "depths": (1, 1, 1, 1)},
    "vit_tiny_patch16_224": {"img_size": 32},
}


def _model(name: str, **kw):
    torch.manual_seed(0)
    return trained_like(
        timm.create_model(
            name, pretrained=False, num_classes=5, drop_path_rate=0.1, **NAMED.get(name, {}), **kw
        )
    )


def _sample(points: list[str], k: int = 4) -> list[str]:
    """First, last and evenly spaced points between."""
    if len(points) <= k:
        return points
    return [points[round(i * (len(points) - 1) / (k - 1))] for i in range(k)]


@pytest.mark.parametrize("name", TEST_MODELS + list(NAMED))
def test_a_sample_of_split_points_builds_matches_and_trains(name):
    # timm's test models (the same four families, small) at 4 points; the full-size ones at a middle point
    # (0.3 s a point); every point of each in the slow tier
    base = _model(name)
    points = split_points(base)
    assert len(points) >= 5
    sample = _sample(points, 4) if name in TEST_MODELS else [points[len(points) // 2]]
    assert check_every_point(base, X, points=sample) == len(sample)


@pytest.mark.slow
@pytest.mark.parametrize("name", TEST_MODELS + list(NAMED))
def test_every_split_point_builds_matches_and_trains(name):
    base = _model(name)
    check_every_point(base, X)


def test_fused_equals_the_loop_on_a_timm_vit():
    base = _model("test_vit")
    x = X
    trees = {m: TreeNet(base, 3, "blocks.3", seed=1, exec_mode=m).eval() for m in ("loop", "fused")}
    trees["fused"].load_state_dict(trees["loop"].state_dict())
    assert fused_nodes(trees["fused"].root) == 1
    with torch.no_grad():
        torch.testing.assert_close(trees["fused"](x), trees["loop"](x), rtol=1e-4, atol=1e-5)
