"""Fixtures for the multi-process tests: one launch per world size serves many tests (process start-up
dominates their cost on a small machine)."""

from pathlib import Path

import pytest
from dist_launch import check_ok, run_ranks, run_torchrun
from dist_worker import REPLICA_RUNS, WORLD2_RUNS, WORLD3_RUNS

# Every conftest.py is imported as the module "conftest" (the last one collected wins), and test modules
# read ``from conftest import REPO``: each conftest.py defines it, as tests/conftest.py does.
REPO = Path(__file__).resolve().parents[2]


def _suite(tmp_path_factory, world: int, items: list[str], launcher=run_ranks) -> list[dict]:
    ranks = launcher(
        tmp_path_factory.mktemp(f"world{world}"), "suite", world, ",".join(items), deadline_s=150
    )
    check_ok(ranks)
    return [r.result for r in ranks]


@pytest.fixture(scope="session")
def world3(tmp_path_factory):
    """Per rank: {item: result} for the op checks and the 3-process training runs."""
    return _suite(tmp_path_factory, 3, ["ops"] + WORLD3_RUNS)


@pytest.fixture(scope="session")
def replicas2(tmp_path_factory):
    """2 data-parallel replicas x 1 model rank."""
    return _suite(tmp_path_factory, 2, REPLICA_RUNS[2])


@pytest.fixture(scope="session")
def replicas4(tmp_path_factory):
    """2 data-parallel replicas x 2 model ranks (a TreeNet split after conv1, MCL)."""
    return _suite(tmp_path_factory, 4, REPLICA_RUNS[4])


@pytest.fixture(scope="session")
def world2(tmp_path_factory):
    """The 2-process runs, launched by torchrun, so that init_from_env (env:// and torchrun's store) is
    covered."""
    return _suite(tmp_path_factory, 2, WORLD2_RUNS, launcher=run_torchrun)
