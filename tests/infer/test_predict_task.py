"""mheads.infer.predict_task.task_records (issue 32): per input, each member's hypothesis (and score), the
ensemble's prediction and its uncertainty, on hand-built member outputs; and the same records as CSV."""

import csv
import io
import json
import re

import pytest
import torch

from mheads.infer.predict_format import format_predictions
from mheads.infer.predict_task import task_records
from mheads.tasks import custom_task, multi_hypothesis, regression, segmentation

KEYS = [("index", 0), ("index", 1)]


def test_gaussian_regression_records_are_the_mixtures_moments():
    means, variances = (
        torch.tensor([[1.0, 3.0], [3.0, 5.0]]),
        torch.tensor([[0.5, 1.0], [1.5, 2.0]]),
    )  # (M, B)
    raw = torch.log(torch.expm1(variances))  # softplus^-1: the heads' raw values
    outputs = torch.stack([means, raw], dim=-1)  # (M, B, 2): D = 1
    records = task_records(regression(1, head="gaussian"), outputs, KEYS)
    first = records[0]
    assert first["index"] == 0 and first["task"] == "regression"
    assert first["prediction"] == pytest.approx([2.0])
    assert first["aleatoric"] == pytest.approx([1.0])  # mean of 0.5 and 1.5
    assert first["epistemic"] == pytest.approx([1.0])  # variance of 1 and 3
    assert first["std"] == pytest.approx([2**0.5], rel=1e-5)
    assert [m["mean"][0] for m in first["members"]] == pytest.approx([1.0, 3.0])
    assert [m["variance"][0] for m in first["members"]] == pytest.approx([0.5, 1.5], rel=1e-5)
    assert records[1]["prediction"] == pytest.approx([4.0]) and records[1]["epistemic"] == pytest.approx(
        [1.0]
    )


def test_point_regression_records_have_no_aleatoric_variance():
    outputs = torch.tensor([[[1.0], [3.0]], [[3.0], [5.0]]])  # (M=2, B=2, D=1): point heads
    records = task_records(regression(1), outputs, KEYS)
    assert [r["aleatoric"] for r in records] == [None, None]  # was [0.0]: no noise estimated, not zero noise
    assert [r["epistemic"] for r in records] == [pytest.approx([1.0])] * 2
    assert records[0]["std"] == pytest.approx([1.0]) and "variance" not in records[0]["members"][0]
    header, row, _ = list(csv.reader(io.StringIO(format_predictions(records, "csv"))))
    assert dict(zip(header, row, strict=True))["aleatoric"] == ""


def test_multi_hypothesis_records_weigh_the_hypotheses_by_their_scores():
    outputs = torch.tensor(
        [[[-1.0, 0.0]], [[2.0, 0.0]], [[5.0, -1e4]]]
    )  # (M=3, B=1, D + 1): scores 0, 0, -inf
    (record,) = task_records(multi_hypothesis(1), outputs, KEYS[:1])
    assert [m["hypothesis"] for m in record["members"]] == [[-1.0], [2.0], [5.0]]
    assert [m["score"] for m in record["members"]] == pytest.approx([0.5, 0.5, 0.0])
    assert record["prediction"] == pytest.approx([0.5])  # the score-weighted mean
    assert record["spread"] == pytest.approx(1.5)  # the weighted RMS distance from it
    assert record["best"] in (0, 1)


def test_segmentation_records_give_each_members_mask_the_ensembles_and_its_entropy():
    member0 = torch.tensor([[[2.0, 0.0], [2.0, 0.0], [0.0, 2.0]]])  # (H=1, W=3, C=2) -> mask 0 0 1
    member1 = torch.tensor([[[2.0, 0.0], [0.0, 3.0], [0.0, 2.0]]])  # mask 0 1 1
    outputs = torch.stack([member0, member1]).permute(0, 3, 1, 2).unsqueeze(1)  # (M, B=1, C, H, W)
    (record,) = task_records(segmentation(2), outputs, KEYS[:1])
    assert [m["mask"] for m in record["members"]] == [[[0, 0, 1]], [[0, 1, 1]]]
    assert record["prediction"] == [[0, 1, 1]]  # pixel 2: mean probabilities favour member 1's 3 over 2
    assert [m["agreement"] for m in record["members"]] == pytest.approx([2 / 3, 1.0])
    probs = torch.softmax(outputs, dim=2).mean(dim=0)[0]  # (C, H, W)
    want = float(-(probs * probs.log()).sum(dim=0).mean())
    assert record["entropy"] == pytest.approx(want, rel=1e-5)


def test_a_users_task_records_the_members_outputs_and_their_combination():
    task = custom_task(lambda out, y: (out - y).abs().mean(-1), head_width=2)
    outputs = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[3.0, 4.0], [2.0, 2.0]]])  # (M=2, B=2, 2)
    records = task_records(task, outputs, KEYS)
    assert records[0]["prediction"] == pytest.approx([2.0, 3.0])
    assert [m["output"] for m in records[1]["members"]] == [[0.0, 0.0], [2.0, 2.0]]


def test_task_records_as_json_and_csv_columns():
    outputs = torch.tensor([[[-1.0, 0.0]], [[2.0, 0.0]]])
    records = task_records(multi_hypothesis(1), outputs, [("path", "rows.csv:1")])
    assert json.loads(format_predictions(records, "json")) == records
    header, row = list(csv.reader(io.StringIO(format_predictions(records, "csv"))))
    values = dict(zip(header, row, strict=True))
    assert values["path"] == "rows.csv:1" and values["task"] == "multi_hypothesis"
    assert float(values["members_1_hypothesis_0"]) == 2.0 and float(values["members_0_score"]) == 0.5
    assert float(values["prediction_0"]) == 0.5


def test_npz_input_names_are_data_inputs_else_the_recorded_dict_keys():
    from mheads.infer.predict_task import npz_input_names

    recorded = {"dict": {"input_ids": {"shape": [6], "dtype": "int64"}, "attention_mask": {}}}
    assert npz_input_names(["a", "b"], recorded) == ["a", "b"] and npz_input_names("x2", None) == "x2"
    assert npz_input_names(None, recorded) == ["input_ids", "attention_mask"]  # a run trained from Python
    assert npz_input_names(None, {"shape": [3], "dtype": "float32"}) == "x"
    assert npz_input_names(None, {"dict": []}) == npz_input_names(None, "junk") == "x"


def test_a_uint8_dict_entry_is_predicted_on_as_pixels_and_int64_ids_are_asked_for():
    """uint8 is pixels on predict's path too: [0, 1] floats given as a batch or a Dataset, as training reads
    it; uint8 where the run trained on int64 ids is one line saying to give int64."""
    from mheads.data.errors import DataError
    from mheads.data.tensors import model_view
    from mheads.infer.predict_task import _examples

    pixels = torch.arange(6, dtype=torch.uint8).reshape(2, 3) * 40
    spec = {"dict": {"pixels": {"shape": [3], "dtype": "uint8"}}}
    for inputs in ({"pixels": pixels}, [{"pixels": pixels[0]}, {"pixels": pixels[1]}]):
        ((batch, first, targets),) = _examples(inputs, spec)
        seen = model_view(batch)["pixels"]
        assert first == 0 and targets is None
        assert seen.dtype == torch.float32 and torch.equal(seen, pixels.float() / 255)
    ids = {"dict": {"input_ids": {"shape": [3], "dtype": "int64"}}}
    with pytest.raises(
        DataError, match=r"^inputs\['input_ids'\]: uint8, read as pixels .* give them as int64"
    ):
        _examples({"input_ids": pixels}, ids)
    ((batch, _, _),) = _examples({"input_ids": pixels.to(torch.int32)}, ids)
    assert batch["input_ids"].dtype == torch.int64


def test_inputs_paired_with_targets_carry_them_to_the_oracle():
    from mheads.data.pairs import TensorPairs
    from mheads.infer.predict_task import _examples

    x, y = torch.randn(3, 2), torch.tensor([[0.5], [1.5], [2.5]])
    spec = {"shape": [2], "dtype": "float32"}
    for inputs in (TensorPairs(x, y), list(zip(x, y)), list(zip(x, [0.5, 1.5, 2.5]))):
        ((batch, _, targets),) = _examples(inputs, spec)
        assert torch.equal(batch, x) and targets.reshape(3).tolist() == [0.5, 1.5, 2.5]
    for alone in (x, list(x), [(row, None) for row in x]):  # inputs alone, or unlabelled pairs: no oracle
        ((batch, _, targets),) = _examples(alone, spec)
        assert torch.equal(batch, x) and targets is None


def test_pairs_whose_targets_do_not_stack_are_predicted_alone_with_one_warning():
    """Text labels, targets of mixed shapes: the inputs are predicted (they were refused)."""
    from mheads.infer.predict_task import _examples

    x = torch.randn(3, 2)
    spec = {"shape": [2], "dtype": "float32"}
    for targets, why in (
        (["cat", "dog", "cat"], r"inputs\[0\]: target 'cat'; expected a number or a tensor"),
        ([torch.zeros(1), torch.zeros(1), torch.zeros(2)], r"inputs\[2\]: a target of shape \(2,\)"),
    ):
        with pytest.warns(UserWarning) as caught:
            ((batch, _, found),) = _examples(list(zip(x, targets)), spec)
        assert torch.equal(batch, x) and found is None
        (line,) = [str(w.message) for w in caught]
        assert re.match(rf"no oracle in the records: {why}.*; the inputs are predicted alone$", line)
