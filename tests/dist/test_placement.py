"""Placement: parsing the config mapping, defaults, and errors that name the field (no processes needed)."""

import pytest

from mheads.dist import Placement, PlacementError
from mheads.dist.faults import DistributedFailure, is_comm_error


def test_from_config_mapping_and_defaults():
    p = Placement.from_dict({"trunk": 0, "branches": [0, 1, 2]})
    assert (p.trunk_rank, p.branch_ranks, p.root_rank) == (0, [0, 1, 2], 0)
    assert Placement.from_dict({"trunk_rank": 1, "root": 2}) == Placement(1, None, 2)
    assert Placement.from_dict(None) == Placement()


def test_default_branches_are_round_robin():
    assert Placement().resolve(4, 2).branch_ranks == [0, 1, 0, 1]
    assert Placement().resolve(3, 3).branch_ranks == [0, 1, 2]
    assert Placement().resolve(2, 4).branch_ranks == [0, 1]


def test_members_per_rank_counts_leaves():
    p = Placement(0, [1, 2, 1, 2]).resolve(4, 3)
    assert p.members_per_rank([1, 1, 1, 1], 3) == [0, 2, 2]
    assert Placement(0, [0, 0]).resolve(2, 2).members_per_rank([2, 2], 2) == [4, 0]


@pytest.mark.parametrize(
    "spec, world, match",
    [
        ({"branches": [0, 1]}, 3, r"branch_ranks: got 2 ranks \[0, 1\]; the model has 3 top-level branches"),
        ({"branches": [0, 1, 3]}, 3, r"branch_ranks\[2\]: got 3; only ranks 0..2 exist"),
        ({"trunk": 2}, 2, r"trunk_rank: got 2; only ranks 0..1 exist"),
        ({"root": 5}, 3, r"root_rank: got 5; only ranks 0..2 exist"),
    ],
)
def test_resolve_errors_name_the_field(spec, world, match):
    with pytest.raises(PlacementError, match=match):
        Placement.from_dict(spec).resolve(3, world)


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"trunk": -1}, r"trunk_rank: got -1; expected a rank"),
        ({"branches": [0, "1"]}, r"branch_ranks\[1\]: got '1'"),
        ({"branches": "012"}, r"branch_ranks: got '012'; expected a list"),
        ({"root": True}, r"root_rank: got True"),
        ({"trunks": 0}, r"unknown key 'trunks'; valid keys are trunk, branches, root"),
        ({"trunk": 0, "trunk_rank": 1}, r"given twice"),
        ([0, 1], r"expected a mapping"),
    ],
)
def test_bad_values_name_the_field(spec, match):
    with pytest.raises(PlacementError, match=match):
        Placement.from_dict(spec)


def test_comm_errors_are_told_from_programming_errors():
    gloo = RuntimeError(
        "[third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:1"
    )
    assert is_comm_error(gloo)
    assert is_comm_error(RuntimeError("Timed out waiting 2000ms for recv operation to complete"))
    assert is_comm_error(DistributedFailure("lost rank 1"))
    assert not is_comm_error(ValueError("gloo"))
    assert not is_comm_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
