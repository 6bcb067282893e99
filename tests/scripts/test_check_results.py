"""scripts/check_results.py: a table row's mean ± std is checked against its per-seed values; a pair computed
from the unrounded committed values passes; a wrong one and a wrong exact parameter count are errors."""

import check_results as cr

VALUES = {82.62, 79.49, 83.59}


def test_mean_and_std_of_the_per_seed_cell_are_checked():
    line = "| cell | 82.62 / 79.49 / 83.59 | 81.90 ± 2.14 |"
    errors, _ = cr.check([line], VALUES, {(81.9, 2.14)}, set())
    assert errors == []
    errors, _ = cr.check([line.replace("81.90", "81.95")], VALUES, set(), set())
    assert len(errors) == 1 and "RESULTS.md:1" in errors[0] and "81.95" in errors[0]


def test_a_committed_pair_of_unrounded_values_passes_where_rounded_ones_differ():
    # 94.7265625 / 79.4921875 / 83.59375 have std 7.883; their two-decimal roundings give 7.886
    line = "| cell | 94.73 / 79.49 / 83.59 | 85.94 ± 7.88 |"
    values = {94.73, 79.49, 83.59}
    assert cr.check([line], values, set(), set())[0] != []
    assert cr.check([line], values, {(85.94, 7.88)}, set())[0] == []


def test_an_exact_parameter_count_must_equal_the_committed_one():
    errors, _ = cr.check(["the trunk has 582,310 parameters"], set(), set(), {582_316})
    assert errors and "582,316" in errors[0]
    assert cr.check(["the trunk has 582,316 parameters"], set(), set(), {582_316})[0] == []
