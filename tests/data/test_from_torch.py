"""A user's torch Datasets of (image, label) read whole (data/from_torch.py): a mixed set says the fix."""

import numpy as np
import pytest
from PIL import Image

from mheads.data.errors import DataError
from mheads.data.from_torch import from_torch_datasets


def _rgb(h: int = 8, w: int = 8) -> Image.Image:
    return Image.fromarray(np.zeros((h, w, 3), np.uint8))


def test_a_greyscale_image_among_colour_ones_is_told_to_convert():
    items = [(_rgb(), 0), (Image.fromarray(np.zeros((8, 8), np.uint8)), 1)]
    with pytest.raises(DataError, match=r"train\[1\]: image shape \(1, 8, 8\) .*convert it \(PIL"):
        from_torch_datasets(items)


def test_an_image_of_another_size_is_pointed_to_data_image_size():
    with pytest.raises(DataError, match=r"train\[1\]: image shape \(3, 9, 8\) .*give data.image_size"):
        from_torch_datasets([(_rgb(), 0), (_rgb(9, 8), 1)])


def test_a_dict_item_of_any_task_is_told_to_return_an_input_target_pair():
    import torch

    from mheads.data.from_torch import check_user_dataset

    items = [{"x": torch.zeros(3), "y": torch.zeros(1)}]  # a regression Dataset in the dict-batch style
    with pytest.raises(
        DataError, match=r"^train\[0\]: .*\['x', 'y'\]; expected an \(input, target\) tuple"
    ) as e:
        check_user_dataset(items, "train")
    assert "(item['x'], item['y'])" in str(e.value) and "\n" not in str(e.value)
