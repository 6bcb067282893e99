"""Behaviour the type checker's fixes in mheads.dist changed (issue 33): ``members_per_rank`` on a placement
whose branch ranks are still the round-robin default says to resolve it first (it raised a TypeError from
``zip``)."""

import pytest

from mheads.dist import Placement, PlacementError


def test_members_per_rank_of_an_unresolved_placement_names_the_field():
    with pytest.raises(PlacementError, match=r"placement\.branch_ranks: got None .*call resolve"):
        Placement().members_per_rank([1, 1], 2)
    assert Placement().resolve(2, 2).members_per_rank([1, 3], 2) == [1, 3]  # resolved: round-robin
