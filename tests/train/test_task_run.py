"""The checks a run makes of a user's model against its data before the first step (train/task_run.py)."""

import re
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import mheads
from mheads.config import ConfigError
from mheads.data.errors import DataError
from mheads.data.pairs import TensorPairs
from mheads.data.tensors import input_spec, model_view
from mheads.train.task_run import check_image_classes, check_outputs_fit
from mheads.tree import TreeNet


def _tree(outputs: int) -> TreeNet:
    return TreeNet(nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, outputs)), num_members=2, seed=0)


def test_a_model_with_one_score_per_class_passes():
    check_image_classes(_tree(5), SimpleNamespace(in_channels=3, image_size=4, num_classes=5))


def test_a_model_with_too_few_class_scores_is_one_line_naming_both_counts():
    data = SimpleNamespace(in_channels=3, image_size=4, num_classes=11)
    with pytest.raises(
        ConfigError, match=r"model: members output \(2, 1, 10\) for one image; expected \(M, 1, 11\)"
    ):
        check_image_classes(_tree(10), data)


def test_the_check_leaves_the_trees_mode_as_it_was():
    tree = _tree(5).train()
    check_image_classes(tree, SimpleNamespace(in_channels=3, image_size=4, num_classes=5))
    assert tree.training


def test_fit_refuses_a_stray_label_10_for_a_10_class_model_before_training(tmp_path):
    """Images of 10 classes with one label 10: 11 classes, which a model of 10 outputs cannot score. It was a
    bare 'targets must lie in [0, 10)' from inside the first step."""
    x, y = torch.rand(16, 3, 4, 4), torch.arange(16) % 10
    y[3] = 10
    with pytest.raises(ConfigError, match=r"expected \(M, 1, 11\).*largest label plus one"):
        mheads.fit(
            lambda: nn.Sequential(nn.Flatten(), nn.Linear(48, 10)),
            TensorPairs(x, y),
            out=tmp_path / "run",
            settings={"model.members": 2, "train.iterations": 1, "train.batch_size": 4},
        )
    assert not (tmp_path / "run" / "checkpoints").exists() or not any(
        (tmp_path / "run" / "checkpoints").iterdir()
    )


def test_a_feature_classifier_told_where_its_class_count_comes_from(tmp_path):
    x, y = torch.randn(16, 5), torch.arange(16) % 2
    y[3] = 10  # a stray label: 11 classes for a model of 2 outputs
    with pytest.raises(ConfigError, match=r"num_classes = 11 \(counted from the labels: .* is 10\)"):
        mheads.fit(
            lambda: nn.Linear(5, 2),
            TensorPairs(x, y),
            out=tmp_path / "run",
            task="classification",
            settings={"model.members": 2, "train.iterations": 1, "train.batch_size": 4},
        )


class KeywordModel(nn.Module):
    """A Hugging Face-style forward: the batch's entries as keyword arguments, not one dict."""

    def __init__(self):
        super().__init__()
        self.emb, self.head = nn.Embedding(20, 4), nn.Linear(4, 2)

    def forward(self, input_ids, attention_mask=None):
        return self.head(self.emb(input_ids).mean(1))


def test_a_model_taking_keyword_arguments_is_told_to_unpack_the_dict(tmp_path):
    """BertForSequenceClassification given to fit with dict items failed deep inside transformers."""
    ids = torch.randint(0, 20, (8, 5))
    mask = torch.ones(5, dtype=torch.long)
    items = [({"input_ids": i, "attention_mask": mask}, int(i[0] % 2)) for i in ids]
    with pytest.raises(ConfigError, match=r"a dict of \['attention_mask', 'input_ids'\] .*\(\*\*batch\)"):
        mheads.fit(
            KeywordModel(),
            items,
            out=tmp_path / "run",
            task="classification",
            settings={"model.members": 2, "train.iterations": 1, "train.batch_size": 4},
        )


class BrokenDictModel(nn.Module):
    """Takes the dict, but its forward has a bug of its own (a shape mismatch)."""

    def __init__(self):
        super().__init__()
        self.emb, self.head = nn.Embedding(20, 4), nn.Linear(3, 2)

    def forward(self, batch):
        return self.head(self.emb(batch["input_ids"]).mean(1))


def test_a_dict_model_failing_for_another_reason_keeps_its_own_error(tmp_path):
    """Not told to unpack the dict (its forward already takes it): the RuntimeError, with its traceback."""
    items = [({"input_ids": i}, int(i[0] % 2)) for i in torch.randint(0, 20, (8, 5))]
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        mheads.fit(
            BrokenDictModel(),
            items,
            out=tmp_path / "run",
            task="classification",
            settings={"model.members": 2, "train.iterations": 1, "train.batch_size": 4},
        )


UINT8_IDS = (  # the whole one line after the input's name (it cut torch's text at 120 characters)
    "uint8, which mheads reads as pixels and gives the model as [0, 1] floats, and its embedding refused "
    "those floats as indices (torch.FloatTensor, not Long or Int); give token ids, masks and codes as "
    "int64 (or int32), or pixels as floats"
)


class DictModel(nn.Module):
    """Token ids through an embedding, the dict as its one argument."""

    def __init__(self):
        super().__init__()
        self.emb, self.head = nn.Embedding(256, 4), nn.Linear(4, 2)

    def forward(self, batch):
        return self.head(self.emb(batch["input_ids"]).mean(1))


def test_uint8_token_ids_are_one_line_saying_ids_are_int64_and_int_ids_train(tmp_path):
    """uint8 is pixels (scaled to [0, 1] floats), which an nn.Embedding refuses: one line naming the entry
    (was torch's 'Expected tensor for argument #1 'indices' ...'); the same ids as int32 train."""
    ids = torch.randint(0, 256, (8, 5), generator=torch.Generator().manual_seed(0))
    settings = {"model.members": 2, "train.iterations": 1, "train.batch_size": 4, "train.eval_every": 0}
    for dtype in (torch.uint8, torch.int32):
        items = [({"input_ids": i.to(dtype)}, int(i[0] % 2)) for i in ids]
        run = lambda: mheads.fit(DictModel(), items, out=tmp_path / str(dtype), settings=settings)  # noqa: E731
        if dtype == torch.int32:
            assert run().tree.num_members == 2
            continue
        with pytest.raises(DataError) as caught:
            run()
        assert str(caught.value) == f"input 'input_ids': {UINT8_IDS}"


class Tokens(nn.Module):
    """Token ids ``(B, T)`` through an embedding, a tensor input alone."""

    def __init__(self):
        super().__init__()
        self.emb, self.head = nn.Embedding(256, 4), nn.Linear(4, 2)

    def forward(self, ids):
        return self.head(self.emb(ids).mean(1))


def test_uint8_token_ids_alone_are_the_whole_one_line_before_the_treenets_first_forward(tmp_path):
    """A uint8 input alone into an embedding: the TreeNet's construction check is its first forward (before
    check_outputs_fit), which raised torch's RuntimeError untouched; now the whole one line (it quoted torch's
    text cut at 120 characters), naming the input and dtype and what to give instead."""
    ids = torch.randint(0, 256, (8, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.TensorDataset(ids, torch.arange(8) % 2)
    settings = {"model.members": 2, "train.iterations": 1, "train.batch_size": 4, "train.eval_every": 0}
    with pytest.raises(DataError) as caught:
        mheads.fit(Tokens(), data, out=tmp_path / "run", settings=settings)
    assert str(caught.value) == f"the input: {UINT8_IDS}"
    assert isinstance(caught.value.__cause__, RuntimeError)


class PixelsAndIds(nn.Module):
    """Pixels (uint8, scaled) and token ids; ``bug``: a dtype bug of its own, a float64 matmul."""

    def __init__(self, bug: bool):
        super().__init__()
        self.emb, self.head, self.bug = nn.Embedding(8, 4), nn.Linear(4 + 6, 2), bug

    def forward(self, batch):
        tokens = self.emb(batch["ids"]).mean(1)
        pixels = batch["image"].flatten(1)
        return self.head(torch.cat([tokens, pixels.double() if self.bug else pixels], 1))


def _dict_data():
    """What check_outputs_fit reads of a data source: dict inputs, a uint8 image and int64 ids, as stored."""
    stored = {"image": torch.zeros(1, 1, 2, 3, dtype=torch.uint8), "ids": torch.zeros(1, 5, dtype=torch.long)}
    return SimpleNamespace(
        example_input=lambda: model_view(stored),
        input_spec=lambda: input_spec(stored),
        task_targets=lambda: torch.zeros(1, dtype=torch.long),
    )


def test_only_an_embeddings_float_indices_error_blames_uint8_a_models_own_dtype_bug_keeps_torchs():
    """A forward that got a scaled uint8 entry and fails with a dtype error of its own (a float64 matmul, its
    text says 'dtype') keeps torch's RuntimeError untouched (was: 'input 'image': uint8, given to the model as
    pixels ...'); the embedding's float-indices error on a uint8 entry is still the one line."""
    task = mheads.tasks.Classification(2)
    with pytest.raises(RuntimeError, match=r"^mat1 and mat2 must have the same dtype") as caught:
        check_outputs_fit(TreeNet(PixelsAndIds(bug=True), 2), _dict_data(), task)
    assert type(caught.value) is RuntimeError and caught.value.__cause__ is None
    check_outputs_fit(TreeNet(PixelsAndIds(bug=False), 2), _dict_data(), task)  # fits
    for ids, image, error in (
        (torch.float32, torch.float32, RuntimeError),  # no uint8 entry: the float ids are the user's own
        (torch.uint8, torch.float32, DataError),  # uint8 ids, scaled: the one line naming the entry
    ):
        stored = {"ids": torch.zeros(1, 5, dtype=ids), "image": torch.zeros(1, 1, 2, 3, dtype=image)}
        data = SimpleNamespace(
            example_input=lambda s=stored: model_view(s), input_spec=lambda s=stored: input_spec(s)
        )
        with pytest.raises(error) as caught:
            check_outputs_fit(TreeNet(PixelsAndIds(bug=False), 2), data, task)
        assert type(caught.value) is error and re.match(
            r"^Expected tensor for argument #1 'indices'"
            if error is RuntimeError
            else re.escape(f"input 'ids': {UINT8_IDS}") + "$",
            str(caught.value),
        )


def _seg_fit(tmp_path, masks, test=None, task=None):
    images = torch.rand(8, 1, 4, 6)
    mheads.fit(
        lambda: nn.Conv2d(1, 2, 1),
        TensorPairs(images, masks),
        None if test is None else TensorPairs(images, test),
        out=tmp_path / "run",
        task=task or mheads.tasks.segmentation(2),
        settings={"model.members": 2, "train.iterations": 1, "train.batch_size": 4},
    )


def test_a_mask_class_out_of_range_is_one_line_before_training_ignore_index_passes(tmp_path):
    masks = torch.zeros(8, 4, 6, dtype=torch.long)
    masks[:, 0] = 255  # the default ignore_index: unlabelled pixels pass
    bad = masks.clone()
    bad[5, 2, 3] = 7  # was a bare 'target: got class 7; ...' from inside the first step (or evaluation)
    with pytest.raises(
        DataError, match=r"^train masks: 1 of 8 hold .* \(the first: 7 at pixel \(2, 3\)\); exp"
    ):
        _seg_fit(tmp_path, bad)
    with pytest.raises(DataError, match=r"^test masks: 1 of 8 hold a class outside 0\.\.1"):
        _seg_fit(tmp_path, masks, test=bad)
    assert not (tmp_path / "run" / "checkpoints").exists() or not any(
        (tmp_path / "run" / "checkpoints").iterdir()
    )
    negative = masks.clone()
    negative[0, 1, 1] = -1  # -1 as ignore without saying so: refused, not counted as a class
    with pytest.raises(DataError, match=r"the first: -1 at pixel \(1, 1\).*task.ignore_index 255$"):
        _seg_fit(tmp_path, negative, task="segmentation")


def test_a_stray_mask_value_that_adds_classes_says_where_the_count_comes_from(tmp_path):
    masks = torch.zeros(8, 4, 6, dtype=torch.long)
    masks[5, 2, 3] = 7  # task.num_classes null: 8 classes counted for a 2-class model
    with pytest.raises(
        ConfigError, match=r"the largest mask value other than task.ignore_index, plus one: 8\)"
    ):
        _seg_fit(tmp_path, masks, task="segmentation")


def test_one_stray_mask_pixel_of_128_does_not_make_a_129_class_task(tmp_path):
    masks = torch.zeros(8, 4, 6, dtype=torch.long)
    masks[:, 1] = 1
    masks[5, 2, 3] = 128  # an anti-aliased edge pixel; it silently trained a 129-class task
    with pytest.raises(
        DataError, match=r"^train masks: value 128 would make a 129-class task, but .* only 3 "
    ):
        _seg_fit(tmp_path, masks, task="segmentation")
    masks[5, 2, 3] = 255  # the ignore_index: two classes, trains
    _seg_fit(tmp_path, masks, task="segmentation")


def test_masks_of_another_size_than_the_output_maps_are_named_without_the_head_advice(tmp_path):
    masks = torch.zeros(8, 3, 6, dtype=torch.long)  # the images and maps are 4x6
    with pytest.raises(
        DataError, match=r"^train masks: 3x6 \(H x W\) but the model's output maps are 4x6"
    ) as e:
        _seg_fit(tmp_path, masks)
    assert "model.head" not in str(e.value)  # was: '... (a base that outputs features: set model.head task)'
