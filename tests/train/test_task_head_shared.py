"""A Hugging Face model with a shared trunk (model.head: task, model.split: output): a real
transformers.BertModel (a tiny BertConfig, no download) called as model(**batch), which torch.fx cannot
trace, is the shared trunk run as a black box, and the members are the task heads (pool first + Linear),
trained jointly with MCL. The trunk is held once, gradients reach it from every member (their sum),
optim.trunk_lr_mult scales it as it scales any trunk, a SIGKILLed run resumes bit-identical, and the run
reopens (load_run, evaluate, predict) from run.json's data with the model named again."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from torch import nn

import mheads
from killed_child import killed_in_child
from mheads.config import ConfigError, config_from_dict
from mheads.optim.build import build_optimizer
from mheads.runs.compare import run_differences
from mheads.tasks.heads import BaseOutput, PooledHead

transformers = pytest.importorskip(
    "transformers", reason="transformers (in the dev extra) builds the tiny BERT these tests train"
)

pytestmark = pytest.mark.timeout(120)

M = 3
SETTINGS = {
    "model.members": M,
    "model.split": "output",
    "model.output": "last_hidden_state",
    "model.pool": "first",
    "loss.name": "mcl",
    "optim.lr": 0.01,
    "train.batch_size": 8,
    "train.eval_every": 2,
    "train.checkpoint_every": 2,
    "train.seed": 5,
}


def tiny_bert():
    config = transformers.BertConfig(
        vocab_size=30,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    return transformers.BertModel(config, add_pooling_layer=False)


class DictInput(nn.Module):  # docs/tasks.md: forward(batch) calls model(**batch)
    def __init__(self):
        super().__init__()
        self.model = tiny_bert()

    def forward(self, batch):
        return self.model(**batch)


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n=32):
        g = torch.Generator().manual_seed(3)
        self.ids = torch.randint(1, 30, (n, 6), generator=g)
        self.mask = (torch.arange(6) < torch.randint(3, 7, (n, 1), generator=g)).long()
        self.y = (self.ids[:, 0] > 15).long()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i]}, self.y[i]


def _batch(n=4):
    ds = Tokens()
    return {k: torch.stack([ds[i][0][k] for i in range(n)]) for k in ("input_ids", "attention_mask")}


def _fit(out, iterations, resume=False, **settings):
    ds = Tokens()
    return mheads.fit(
        DictInput,
        ds,
        ds,
        out=out,
        head="task",
        task="classification",
        resume=resume,
        progress=False,
        settings={**SETTINGS, **settings, "train.iterations": iterations},
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return _fit(tmp_path_factory.mktemp("bert") / "run", 8)


def _trunk_and_heads(tree):
    return tree.root.layers, [branch.layers for branch in tree.root.branches]


def test_bert_trains_with_mcl_on_one_shared_trunk_and_a_head_per_member(trained):
    trunk, heads = _trunk_and_heads(trained.tree)
    assert isinstance(trunk, BaseOutput) and isinstance(trunk.base, DictInput)
    assert len(heads) == M and all(isinstance(h, PooledHead) and h.pool == "first" for h in heads)
    bert = sum(p.numel() for p in tiny_bert().parameters())
    assert sum(p.numel() for p in trained.tree.parameters()) == bert + M * (16 * 2 + 2)  # the trunk once
    counts = trained.metrics["param_counts"]
    assert counts["shared"] == bert and counts["total"] == bert + M * 34
    evals = [json.loads(line) for line in (trained.run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [2, 4, 6, 8] and evals[-1]["train_loss"] < evals[0]["train_loss"]
    out = trained.tree(_batch())
    assert out.shape == (M, 4, 2)
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])  # the members differ
    meta = json.loads((trained.run / "run.json").read_text())["meta"]
    assert meta["split"] == "output" and meta["architecture"] == "python"  # data: nothing to import
    assert meta["head"] == {"features": 16, "layer": "linear", "pool": "first", "whole_base": True}


def test_gradients_reach_the_trunk_from_every_member_and_sum(trained):
    tree = trained.tree
    trunk, _ = _trunk_and_heads(tree)
    params = list(trunk.parameters())
    x = _batch()

    def grads(members):
        tree.zero_grad()
        tree(x)[members].sum().backward()
        return [p.grad.clone() for p in params]

    each = [grads(m) for m in range(M)]
    for m in range(M):
        assert sum(float(g.abs().sum()) for g in each[m]) > 0, (
            f"no gradient reaches the trunk from member {m}"
        )
    together = grads(slice(None))
    for g, *parts in zip(together, *each):
        torch.testing.assert_close(g, sum(parts))
    tree.zero_grad()


def test_trunk_lr_mult_scales_the_shared_base_as_any_trunk(trained):
    tree = trained.tree
    trunk, heads = _trunk_and_heads(tree)
    cfg = config_from_dict(
        {"model": {"members": M}, "optim": {"lr": 0.1, "trunk_lr_mult": "inverse_members"}}
    )
    opt, _ = build_optimizer(cfg, list(tree.parameters()), tree)
    mult = {id(p): g["lr_mult"] for g in opt.param_groups for p in g["params"]}
    assert all(mult[id(p)] == pytest.approx(1 / M) for p in trunk.parameters())
    assert all(mult[id(p)] == 1.0 for h in heads for p in h.parameters())


def test_a_zero_trunk_rate_trains_the_heads_only(tmp_path):
    torch.manual_seed(0)
    base = DictInput()
    ds = Tokens()
    settings = {**SETTINGS, "model.init": "pretrained", "optim.trunk_lr_mult": 0, "train.iterations": 2}
    result = mheads.fit(base, ds, out=tmp_path / "run", head="task", progress=False, settings=settings)
    trunk, heads = _trunk_and_heads(result.tree)
    want = base.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in trunk.base.state_dict().items())
    assert not torch.equal(heads[0].head.weight, heads[1].head.weight)


def test_the_run_reopens_from_its_folder(trained):
    x = _batch()
    again = mheads.load_run(trained.run, model=DictInput)
    assert torch.equal(again(x), trained.tree(x))
    assert isinstance(again.root.layers, BaseOutput)
    metrics = mheads.evaluate(trained.run, Tokens(), model=DictInput)
    assert metrics["oracle_acc"] == pytest.approx(trained.metrics["oracle_acc"])
    records = mheads.predict(trained.run, x, model=DictInput)
    assert records == mheads.predict(trained, x) and len(records[0]["members"]) == M


def test_a_sigkilled_run_resumes_bit_identical(tmp_path):
    _fit(tmp_path / "full", 6)
    out = tmp_path / "killed"
    status = killed_in_child(out, 5, lambda: _fit(out, 6))
    assert not (tmp_path / "killed.err").exists(), (tmp_path / "killed.err").read_text()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"wait status {status}"
    assert not (out / "metrics.json").exists()
    resumed = _fit(out, 6, resume=True)
    assert resumed.metrics["resumed_from_iteration"] == 4
    assert run_differences(tmp_path / "full", out) == []


def test_split_output_is_the_whole_split(tmp_path):
    """Refused as one level of several. (Without a head ``output`` is a layer name, as it was before it
    could mean the whole base: tests/train/test_task_head.py.)"""
    allowed = "expected null, a layer name or a list of .layer, branches.; output .the whole base shared."
    with pytest.raises(ConfigError, match=f"^model.split: got .*output.*; {allowed}"):
        mheads.fit(
            DictInput,
            Tokens(),
            out=tmp_path / "run",
            head="task",
            progress=False,
            settings={**SETTINGS, "model.split": [["output", M]]},
        )
