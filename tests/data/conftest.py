import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _user_cache(tmp_path, monkeypatch):
    # Keep caches that fall back to the user cache folder inside the test's tmp_path, never in ~/.cache.
    monkeypatch.setenv("MHEADS_CACHE", str(tmp_path / "user-cache"))
    return tmp_path / "user-cache"


@pytest.fixture
def shared_data() -> Path:
    """The full data sets: ``MHEADS_DATA_DIR``, default ../shared/data beside the checkout.

    Skips the test when the folder is absent."""
    path = Path(os.environ.get("MHEADS_DATA_DIR", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(
            f"real data not found at {path} (set MHEADS_DATA_DIR to the folder holding fashion-mnist/)"
        )
    return path
