"""Which finished runs a sweep cell may reuse: the fields that decide a run's results."""

import copy
import os

from mheads.reproduce.reuse import find_equivalent_run, result_key
from mheads.reproduce.spec import load_spec


def test_a_data_source_is_compared_by_its_resolved_path(tmp_path, monkeypatch):
    data = tmp_path / "shared" / "data.tar.gz"
    data.parent.mkdir()
    data.write_bytes(b"x")
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    relative = {"data": {"source": os.path.join("..", "shared", "data.tar.gz")}, "name": "a"}
    absolute = {"data": {"source": str(data)}, "name": "b"}
    assert result_key(relative) == result_key(absolute)
    other = {"data": {"source": str(tmp_path / "elsewhere.tar.gz")}, "name": "c"}  # not on disk: as written
    assert result_key(other)["data"]["source"] == str(tmp_path / "elsewhere.tar.gz")
    assert result_key(other) != result_key(absolute)


def _finished(root, sweep, cfg):
    """A finished run of ``cfg`` in ``root/sweep``: its config.yaml and metrics.json, all the search reads."""
    run = root / sweep / f"seed-{cfg.train.seed}" / "k2_p100"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(cfg.to_yaml())
    (run / "metrics.json").write_text("{}")
    return run


def test_a_run_that_recorded_mean_image_is_the_twin_of_a_cell_that_leaves_normalize_null(tmp_path):
    """Every sweep run from before null was the default recorded mean_image (the recipes name it: checked
    here for table5); a cell with null computes the same on images, with another mode not."""
    cell = next(c for c in load_spec("table5", "cpu", None).cells if c.name == "k2_p100")
    assert cell.config.data.normalize == "mean_image"
    old = _finished(tmp_path, "old-sweep", cell.config)
    cfg = copy.deepcopy(cell.config)
    cfg.data.normalize = None
    assert result_key(cfg.to_dict()) == result_key(cell.config.to_dict())
    assert find_equivalent_run(cfg, cfg.train.seed, tmp_path, tmp_path / "new" / "k2_p100") == old
    for mode in ("per_channel", "none"):
        cfg.data.normalize = mode
        assert find_equivalent_run(cfg, cfg.train.seed, tmp_path, tmp_path / "new" / "k2_p100") is None


def test_normalize_null_is_none_in_the_result_key_of_inputs_read_as_tensors():
    null, none, mean = ({"data": {"source": "d.npz", "normalize": m}} for m in (None, "none", "mean_image"))
    assert result_key(null, tensors=True) == result_key(none, tensors=True) != result_key(mean, tensors=True)
    assert result_key(null) == result_key(mean) != result_key(none)  # images: null is mean_image
