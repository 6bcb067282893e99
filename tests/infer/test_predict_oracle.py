"""mheads.infer.predict_oracle: per record the member closest to its target and that member's error (the
winner-takes-all winner), from the task's own oracle, on hand-built member outputs with known answers."""

import json
import warnings

import pytest
import torch

from mheads.data.errors import DataError
from mheads.infer.predict_format import format_predictions
from mheads.infer.predict_oracle import (
    NO_ORACLE,
    UnfitTargets,
    leave_out,
    oracle_fields,
    pair_targets,
    without_oracle,
)
from mheads.tasks import Classification, custom_task, multi_hypothesis, regression, segmentation


def test_regression_names_the_member_with_the_lowest_squared_error_and_the_target():
    outputs = torch.tensor([[[1.0, 0.0], [4.0, 4.0]], [[2.0, 2.0], [3.0, 1.0]]])  # (M=2, B=2, D=2): point
    targets = torch.tensor([[2.0, 1.0], [4.0, 2.0]])
    first, second = oracle_fields(regression(2), outputs, targets)
    # example 0: member 0 (1 + 1) / 2 = 1.0, member 1 (0 + 1) / 2 = 0.5; example 1: 2.0 vs 1.0
    assert first == {"target": [2.0, 1.0], "oracle": {"member": 1, "error": 0.5}}
    assert second == {"target": [4.0, 2.0], "oracle": {"member": 1, "error": 1.0}}


def test_a_tie_goes_to_the_lowest_member_and_gaussian_heads_use_their_means():
    means = torch.tensor([[3.0], [1.0]])  # (M=2, B=1): 1 away from the target either side
    outputs = torch.stack([means, torch.zeros_like(means)], dim=-1)  # (M, B, 2): a mean and a raw variance
    (record,) = oracle_fields(regression(1, head="gaussian"), outputs, torch.tensor([2.0]))
    assert record == {"target": [2.0], "oracle": {"member": 0, "error": 1.0}}


def test_multiple_hypotheses_pick_the_closest_hypothesis_not_the_best_scored():
    outputs = torch.tensor([[[0.0, 0.0, 5.0]], [[3.0, 4.0, -5.0]]])  # (M=2, B=1, D + 1): member 0 scored
    (record,) = oracle_fields(multi_hypothesis(2), outputs, torch.tensor([[3.0, 5.0]]))
    assert record == {"target": [3.0, 5.0], "oracle": {"member": 1, "error": 1.0}}  # Euclidean distance
    outputs[1, 0, 2] = -float("inf")  # member 1 switched off (weight 0): still the closest (was: null)
    (record,) = oracle_fields(multi_hypothesis(2), outputs, torch.tensor([[3.0, 5.0]]))
    assert record == {"target": [3.0, 5.0], "oracle": {"member": 1, "error": 1.0}}


def test_classification_says_whether_any_member_is_right_and_the_first_that_is():
    outputs = torch.tensor(
        [[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]], [[0.0, 0.0, 2.0], [0.0, 0.0, 2.0]]]
    )  # (M=2, B=2, C=3): top classes (0, 1) and (2, 2)
    records = oracle_fields(Classification(), outputs, torch.tensor([2, 0]), ["cat", "dog", "ship"])
    assert records[0] == {"target": "ship", "oracle": {"member": 1, "correct": True}}
    assert records[1] == {"target": "cat", "oracle": {"member": None, "correct": False}}  # nobody is right
    assert oracle_fields(Classification(), outputs, torch.tensor([0, 1]))[1]["target"] == 1  # no names
    with pytest.raises(UnfitTargets, match=r"^inputs\[7\]: target 3; the run's classes are 0\.\.2$"):
        oracle_fields(Classification(), outputs, torch.tensor([0, 3]), None, [("index", 6), ("index", 7)])
    with pytest.raises(UnfitTargets, match=r"^t\.csv:1: target -1; the run's classes are 0\.\.2$"):
        oracle_fields(Classification(), outputs, torch.tensor([-1, 0]), None, [("path", "t.csv:1")] * 2)
    with pytest.raises(UnfitTargets, match=r"^targets of dtype torch\.float32; expected integer class"):
        oracle_fields(Classification(), outputs, torch.tensor([0.5, 1.0]))


def test_segmentation_and_a_users_task_give_the_oracle_alone():
    member0 = torch.tensor([[[2.0, 0.0], [2.0, 0.0], [0.0, 2.0]]])  # (H=1, W=3, C=2) -> mask 0 0 1
    member1 = torch.tensor([[[0.0, 2.0], [0.0, 3.0], [0.0, 2.0]]])  # mask 1 1 1
    outputs = torch.stack([member0, member1]).permute(0, 3, 1, 2).unsqueeze(1)  # (M, B=1, C, H, W)
    (record,) = oracle_fields(segmentation(2), outputs, torch.tensor([[[0, 1, 1]]]))
    assert record["oracle"]["member"] == 0 and record["oracle"]["error"] == pytest.approx(1 / 3, rel=1e-5)
    assert "target" not in record
    task = custom_task(lambda out, y: (out - y).abs().mean(-1), head_width=2)
    out = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]])  # (M=2, B=1, 2)
    assert oracle_fields(task, out, torch.tensor([[3.0, 3.0]])) == [{"oracle": {"member": 1, "error": 0.5}}]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_record_with_no_finite_member_names_member_and_error_null(bad):
    outputs = torch.tensor([[[1.0], [bad], [bad]], [[3.0], [bad], [5.0]]])  # (M=2, B=3, D=1)
    records = oracle_fields(regression(1), outputs, torch.tensor([2.0, 2.0, 2.0]))
    assert [r["oracle"] for r in records] == [
        {"member": 0, "error": 1.0},  # a tie, to the lowest member
        {"member": None, "error": None},  # no member finite: no error to name (was member 0, error NaN)
        {"member": 1, "error": 9.0},  # one finite member: it wins, as before
    ]
    rows = [{"task": "regression"} | r for r in records]
    assert json.loads(format_predictions(rows, "json"))[1]["oracle"] == {"member": None, "error": None}
    csv = format_predictions(rows, "csv").splitlines()
    assert csv[0] == "task,target_0,oracle_member,oracle_error" and csv[2] == "regression,2.0,,"
    task = custom_task(lambda out, y: (out - y).abs().mean(-1), head_width=2)
    (record,) = oracle_fields(task, torch.full((2, 1, 2), bad), torch.tensor([[3.0, 3.0]]))
    assert record == {"oracle": {"member": None, "error": None}}
    nan_loss = custom_task(lambda out, y: torch.full(out.shape[:1], torch.nan), head_width=2)
    (record,) = oracle_fields(nan_loss, torch.ones(2, 1, 2), torch.tensor([[3.0, 3.0]]))
    assert record == {"oracle": {"member": None, "error": None}}  # finite outputs, no error (was NaN)


def test_targets_that_do_not_fit_the_task_raise_unfit_targets_naming_the_first():
    with pytest.raises(UnfitTargets, match=r"^target: .*\(B, 2\) \(the targets .*regression run\)$"):
        oracle_fields(regression(2), torch.zeros(2, 1, 2), torch.tensor([[1.0, 2.0, 3.0]]))
    task = custom_task(lambda out, y: (out - y).abs().mean(-1), head_width=2)
    with pytest.raises(UnfitTargets, match=r"\(the targets given with the inputs, for a custom run\)"):
        oracle_fields(task, torch.zeros(2, 1, 2), torch.zeros(1, 3))  # the user's loss: mismatched shapes
    assert pair_targets([1.5, torch.tensor(2.0)]).tolist() == [1.5, 2.0]
    with pytest.raises(UnfitTargets, match=r"^inputs\[5\]: a target of shape \(3,\); expected .* \(2,\)$"):
        pair_targets([torch.zeros(2), torch.zeros(3)], first=4)
    with pytest.raises(UnfitTargets, match=r"^inputs\[1\]: target 'cat'; expected a number or a tensor$"):
        pair_targets([0, "cat", "dog"])
    assert issubclass(UnfitTargets, DataError)


def test_leave_out_warns_why_and_without_oracle_drops_the_fields(capsys):
    """A UserWarning a caller can filter or record (nothing printed); its text begins with NO_ORACLE."""
    with pytest.warns(UserWarning) as caught:
        leave_out(UnfitTargets("inputs[3]: target 7; the run's classes are 0..4"))
    (warning,) = caught.list
    assert warning.category is UserWarning and str(warning.message) == (
        "no oracle in the records: inputs[3]: target 7; the run's classes are 0..4; the inputs are "
        "predicted alone"
    )
    assert str(warning.message).startswith(NO_ORACLE) and capsys.readouterr().err == ""
    with warnings.catch_warnings():
        warnings.filterwarnings("error")
        warnings.filterwarnings("ignore", message=NO_ORACLE)  # as the constant's docstring says
        leave_out(UnfitTargets("inputs[0]: target 'a'"))
    records = [{"index": 0, "top": [], "target": "cat", "oracle": {"member": 0, "correct": True}}]
    assert without_oracle(records) == [{"index": 0, "top": []}]
