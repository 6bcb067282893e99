import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # Tests compare floats across code paths; keep thread counts fixed and the global RNG seeded.
    torch.manual_seed(0)
    yield


def shared_data_dir() -> Path:
    """Where the full data sets live (``MHEADS_DATA_DIR``, default ../shared/data beside the checkout)."""
    return Path(os.environ.get("MHEADS_DATA_DIR", REPO.parent / "shared" / "data"))
