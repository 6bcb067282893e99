"""fit with the task's head on top of any base (model.head: task, issue 32): every built-in task trains on a
base that outputs features, its outputs have the task's shape, the run reopens from run.json data alone and
predicts the same outputs, resume is exact; errors name the field. Tiny sizes."""

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import mheads
from mheads.config import ConfigError, config_from_dict
from mheads.core.seeding import member_init_seeds
from mheads.data.pairs import TensorPairs
from mheads.runs.checkpoint import CheckpointError
from mheads.tasks import classification, multi_hypothesis, regression, segmentation
from mheads.tasks.heads import BaseOutput
from mheads.train.build import model_meta
from mheads.train.task_head import head_base, head_from_meta, headed_split
from mheads.tree import TreeNet

BASE = {
    "model.head": "task",
    "model.members": 2,
    "train.batch_size": 8,
    "train.eval_every": 2,
    "train.checkpoint_every": 2,
    "train.iterations": 2,
    "optim.lr": 0.01,
    "train.seed": 4,
}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def features():
    return nn.Sequential(nn.Linear(3, 6), nn.ReLU())  # (B, F) features, F = 6


def maps():
    return nn.Sequential(nn.Conv2d(1, 5, 3, padding=1), nn.ReLU())  # (B, F, H, W) maps, F = 5


class Encoder(nn.Module):  # a Hugging Face-style sequence encoder: (B, T, C) in, a dict of states out
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(2, 6)
        self.block = nn.Linear(6, 6)

    def forward(self, x):
        h = self.stem(x).relu()
        h = h + self.block(h)
        return {"last_hidden_state": h, "pooler_output": h[:, 0]}


def table(target):
    x = torch.randn(24, 3, generator=gen())
    y = {"class": (x[:, 0] > 0).long(), "vector": torch.stack([x.sum(1), x[:, 0]], 1), "scalar": x[:, 1]}
    return TensorPairs(x, y[target])


def images():
    img = torch.randint(0, 256, (8, 1, 4, 6), generator=gen(2), dtype=torch.uint8)  # H != W
    return TensorPairs(img, (img[:, 0] > 127).long())


def sequences():
    x = torch.randn(16, 5, 2, generator=gen(3))  # (T, C) per example: the encoder reads (B, T, C)
    return TensorPairs(x, x[:, -1, :1])


# name: (base, data, task, extra settings, the output shape per member for 3 examples)
CASES = {
    "classification": (features, lambda: table("class"), "classification", {}, (3, 2)),
    "point": (features, lambda: table("vector"), regression(2), {"loss.name": "mcl"}, (3, 2)),
    "gaussian": (features, lambda: table("vector"), regression(2, head="gaussian"), {}, (3, 4)),
    "hypotheses": (
        features,
        lambda: table("scalar"),
        multi_hypothesis(1),
        {"loss.name": "mcl_scored"},
        (3, 2),
    ),
    # channels_last (the default) leaves the trained tree's 4-D weights in that layout: another kernel, other
    # rounding than the reopened tree's
    "segmentation": (
        maps,
        images,
        segmentation(2),
        {"loss.name": "mcl", "train.channels_last": False},
        (3, 2, 4, 6),
    ),
    "sequence": (
        Encoder,
        sequences,
        "regression",
        {"model.output": "last_hidden_state", "model.pool": "mean", "model.split": "stem"},
        (3, 1),
    ),
}


def _fit(case, out, iterations=2, resume=False, **kw):
    base, data, task, extra, _ = CASES[case]
    return mheads.fit(
        base,
        data(),
        out=out,
        task=task,
        resume=resume,
        progress=False,
        settings={**BASE, **extra, "train.iterations": iterations},
        **kw,
    )


def _inputs(case):
    x = CASES[case][1]()[:3][0]
    return x.float() / 255 if x.dtype == torch.uint8 else x


@pytest.mark.parametrize("case", list(CASES))
def test_every_task_trains_a_head_on_a_base_and_reopens_from_the_run(tmp_path, case):
    result = _fit(case, tmp_path / case)
    x = _inputs(case)
    with torch.no_grad():
        out = result.tree(x)
    assert out.shape == (2, *CASES[case][4])
    meta = json.loads((tmp_path / case / "run.json").read_text())["meta"]
    layer = "conv" if case == "segmentation" else "linear"
    assert meta["head"]["layer"] == layer and meta["head"]["features"] == (5 if case == "segmentation" else 6)
    reopened = mheads.load_run(
        tmp_path / case, model=CASES[case][0]
    )  # the base named; the head from run.json
    with torch.no_grad():
        assert torch.equal(reopened(x), out)


def test_resume_is_exact(tmp_path):
    _fit("sequence", tmp_path / "full", 4)
    _fit("sequence", tmp_path / "part", 2)
    _fit("sequence", tmp_path / "part", 4, resume=True)
    wa, wb = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("full", "part"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert {k for k in wa if k.endswith("head.weight")}  # the heads are saved with the members


def test_each_member_has_its_own_head_drawn_from_its_seed(tmp_path):
    result = _fit("sequence", tmp_path / "r", 2)
    tree = result.tree
    assert tree.shared_layers() == ["base.stem"]  # model.split names the base's own layer
    weights = [p for n, p in tree.named_parameters() if n.endswith("head.weight")]
    assert len(weights) == 2 and not torch.equal(weights[0], weights[1])
    config = (tmp_path / "r" / "config.yaml").read_text()
    assert "head: task" in config and "head_in: 6" in config  # F found by the probe, recorded


def test_pretrained_members_keep_the_base_and_redraw_their_heads():
    base = Encoder()
    cfg = mheads.Config()
    cfg.model.head, cfg.model.pool, cfg.model.output = "task", "last", "last_hidden_state"
    cfg.model.init, cfg.model.reinit, cfg.task.name = "pretrained", ["block"], "regression"
    probe = torch.randn(2, 5, 2, generator=gen())
    headed, split, reinit = head_base(base, cfg, regression(1), probe)
    assert reinit == ["base.block", "head"] and split is None and cfg.model.head_in == 6
    tree = mheads.TreeNet(headed, 2, split, init="pretrained", reinit=reinit, seed=1)
    members = [dict(tree.member(m).named_parameters()) for m in range(2)]
    assert all(torch.equal(p["base.stem.weight"], base.stem.weight) for p in members)  # kept
    assert not torch.equal(members[0]["base.block.weight"], base.block.weight)  # model.reinit, per member
    assert not torch.equal(members[0]["head.weight"], members[1]["head.weight"])  # each its own head


def test_fit_head_argument_is_the_setting(tmp_path):
    settings = {k: v for k, v in BASE.items() if k != "model.head"}
    r = mheads.fit(
        features, table("class"), out=tmp_path / "a", head="task", progress=False, settings=settings
    )
    assert r.tree(torch.randn(3, 3)).shape == (2, 3, 2)
    with pytest.raises(ConfigError, match=r"head: got 'none', and settings name model.head 'task'"):
        mheads.fit(features, table("class"), out=tmp_path / "b", head="none", settings=BASE)


@pytest.mark.parametrize(
    "model,extra,match",
    [
        (Encoder, {"model.output": "last_hidden_state"}, r"model.pool: got 'none'; .*\(1, 5, 6\): set mean"),
        (Encoder, {"model.output": "pooler_output", "model.pool": "last"}, r"model.pool: got 'last'"),
        (Encoder, {"model.output": "last_hidden_state", "model.pool": "mean", "model.head_in": 7}, "F = 6"),
        (Encoder, {"model.output": "hidden"}, r"model.output: got 'hidden'; Encoder returns"),
        (lambda: mheads.TreeNet(Encoder(), 2), {}, r"model.head: got 'task' with a TreeNet"),
    ],
)
def test_what_does_not_fit_is_refused_naming_the_field(tmp_path, model, extra, match):
    with pytest.raises(ConfigError, match=match):
        base = model() if "TreeNet" in match else model
        mheads.fit(base, sequences(), out=tmp_path / "x", task="regression", settings={**BASE, **extra})


def test_a_registered_model_gets_no_head(tmp_path):
    with pytest.raises(ConfigError, match=r"model.head: got 'task' with model.name 'cifar10_quick'"):
        mheads.fit("cifar10_quick", out=tmp_path / "x", settings={"model.head": "task"})


def test_without_a_head_the_run_records_none():
    cfg = mheads.Config()
    assert cfg.model.head == "none"
    assert "head" not in model_meta(cfg, 10, 3, 32)


def test_split_paths_move_under_the_base():
    assert headed_split(None) is None
    assert headed_split("layer2") == "base.layer2"
    assert headed_split([("a", 2), ("b", 2)]) == [("base.a", 2), ("base.b", 2)]
    assert headed_split("output") == "base"  # after the base's output: the cut the headed base offers


def test_split_output_shares_the_whole_base_untraced_and_reopens(tmp_path):
    """model.split: output (tests/train/test_task_head_shared.py trains a real BERT this way)."""
    base, data, task, extra, _ = CASES["sequence"]
    settings = {**BASE, **extra, "model.split": "output", "model.members": 3}
    result = mheads.fit(base, data(), out=tmp_path / "run", task=task, progress=False, settings=settings)
    tree = result.tree
    assert isinstance(tree.root.layers, BaseOutput) and len(tree.root.branches) == 3
    assert tree.param_counts()["shared"] == sum(p.numel() for p in Encoder().parameters())
    meta = json.loads((result.run / "run.json").read_text())["meta"]
    assert meta["split"] == "output"
    x = _inputs("sequence")
    assert torch.equal(mheads.load_run(result.run, model=Encoder)(x), tree(x))


def test_split_output_as_one_level_of_several_with_a_head_is_refused():
    allowed = "null, a layer name or a list of .layer, branches.; output .the whole base shared. only as"
    with pytest.raises(ConfigError, match=rf"^model.split: got .*; expected {allowed}"):
        config_from_dict({"model": {"split": [["output", 2]], "head": "task"}})


@pytest.mark.parametrize("split", ["output", [["output", 2]]])
def test_without_a_head_output_is_a_layer_name_as_before(split):
    """A base's own ``self.output`` layer: a run split there before ``split: output`` meant the whole base
    must still load its config.yaml and reopen (it was refused: 'output ... only with model.head task')."""
    cfg = config_from_dict({"model": {"split": split, "head": "none"}})
    assert cfg.model.split == (split if isinstance(split, str) else [("output", 2)])

    class WithOutput(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.output, self.last = nn.Linear(5, 8), nn.Linear(8, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.last(torch.relu(self.output(torch.relu(self.body(x)))))

    tree = TreeNet(WithOutput(), 2, "output")
    assert tree.param_counts()["shared"] == 5 * 8 + 8 + 8 * 4 + 4  # body and output shared, last per member


@pytest.mark.parametrize(
    "head,match",
    [
        ({"features": 0, "layer": "linear", "pool": "none"}, r"head.features: got 0"),
        (
            {"features": 4, "layer": "mlp", "pool": "none"},
            r"head.layer: got 'mlp'; expected one of linear, conv",
        ),
        ({"features": 4, "layer": "linear"}, r"head.pool: got None"),
        ("linear", r"head.features: got None"),
    ],
)
def test_a_damaged_head_description_is_refused_naming_the_field(head, match):
    meta = {"num_classes": 2, "head": head}
    with pytest.raises(CheckpointError, match=rf"run.json: the model description does not build .*{match}"):
        head_from_meta(features, meta, None, "run.json")


def test_classification_of_images_through_a_pooled_conv_base(tmp_path):
    g = gen(5)
    ds = torch.utils.data.TensorDataset(
        torch.randint(0, 256, (24, 1, 8, 8), generator=g, dtype=torch.uint8),
        torch.randint(0, 3, (24,), generator=g),
    )
    settings = {**BASE, "model.pool": "global_avg", "train.eval_batch_size": 12}
    r = mheads.fit(maps, ds, out=tmp_path / "img", progress=False, settings=settings, task=classification())
    assert r.tree(torch.rand(2, 1, 8, 8)).shape == (2, 2, 3)
    assert "oracle_acc" in r.metrics


def test_a_base_that_outputs_features_without_a_head_is_told_of_model_head(tmp_path):
    settings = {**BASE, "model.head": "none"}
    with pytest.raises(ConfigError, match=r"task 'regression' refuses \(2 outputs .*set model.head task\)"):
        mheads.fit(features, table("vector"), out=tmp_path / "x", task=regression(2), settings=settings)


def test_a_frozen_base_trains_its_heads_only(tmp_path):
    def frozen():
        net = features()
        net.requires_grad_(False)
        return net

    result = mheads.fit(frozen, table("class"), out=tmp_path / "f", task="classification", settings=BASE)
    member = dict(result.tree.member(1).named_parameters())
    torch.manual_seed(member_init_seeds(BASE["train.seed"], 2)[1])  # member 1's base as it was drawn
    start = frozen()
    assert torch.equal(member["base.0.weight"], start[0].weight)  # not trained
    head = nn.Linear(6, 2)  # drawn next under the same seed, as the member's head was
    assert not torch.equal(member["head.weight"], head.weight)  # trained from there


class _WithOutputLayer(nn.Module):  # a base whose own layer is named output (features out: F = 4)
    def __init__(self):
        super().__init__()
        self.body, self.output = nn.Linear(3, 8), nn.Linear(8, 4)

    def forward(self, x):
        return self.output(torch.relu(self.body(x)))


def _meta_split_output(**head):
    return {
        "architecture": "python",
        "members": 2,
        "split": "output",
        "num_classes": 2,
        "in_channels": 1,
        "image_size": 1,
        "options": {},
        "input": {"shape": [3], "dtype": "float32"},
        "head": {"features": 4, "layer": "linear", "pool": "none", **head},
    }


def test_split_output_records_the_whole_base_choice():
    """run.json's meta says that ``split: output`` is the whole base (``head.whole_base``), so a reopened run
    never reads it as a layer the base names ``output`` (what it meant before the whole-base cut existed)."""
    cfg = config_from_dict({"model": {"head": "task", "split": "output", "head_in": 4}})
    assert model_meta(cfg, 2, 1, 1)["head"]["whole_base"] is True
    cfg = config_from_dict({"model": {"head": "task", "split": "body", "head_in": 4}})
    assert "whole_base" not in model_meta(cfg, 2, 1, 1)["head"]  # only the whole-base cut is recorded


@pytest.mark.parametrize("whole_base", [True, False, None])
def test_reopening_follows_the_recorded_whole_base_choice(whole_base):
    """Recorded true: the whole base is the trunk; false: the split is the base's layer ``output`` (a run
    from before the whole-base cut, its run.json so marked); not recorded (a run folder from before the
    record): the whole base, as such folders have reopened since the cut existed."""
    from mheads.train.build import tree_from_meta

    meta = _meta_split_output(**({} if whole_base is None else {"whole_base": whole_base}))
    tree = tree_from_meta(meta, model=_WithOutputLayer)
    shared = tree.param_counts()["shared"]
    if whole_base is False:  # body and the output layer shared, a head per member
        assert not isinstance(tree.root.layers, BaseOutput) and shared == 3 * 8 + 8 + 8 * 4 + 4
    else:
        assert isinstance(tree.root.layers, BaseOutput) and shared == 3 * 8 + 8 + 8 * 4 + 4
        assert [type(b.layers).__name__ for b in tree.root.branches] == ["PooledHead"] * 2


@pytest.mark.parametrize("value,split", [("yes", "output"), (1, "output"), (None, "output"), (True, "body")])
def test_a_damaged_whole_base_record_is_refused_naming_the_field(value, split):
    meta = _meta_split_output(whole_base=value)
    allowed = "expected true or false, true only with split 'output'"
    with pytest.raises(CheckpointError, match=rf"run.json: .*head.whole_base: got {value!r}; {allowed}"):
        head_from_meta(features, meta, split, "run.json")
