"""A base that cuts itself (mheads.tree.parts): the task head on any base offers "base", the whole base a
shared trunk run as a black box. A base torch.fx cannot trace (a dict unpacked into keyword arguments, a
branch on a tensor's value) is cut there: the trunk held once, every member its own head, each member equal
to its own headed network, member files under the base's keys, FLOPs counting the trunk once; a malformed
cut is refused."""

import pytest
import torch
from torch import nn

from mheads.tasks.heads import BaseOutput, HeadedBase, PooledHead
from mheads.tree import TreeNet
from mheads.tree.cut_points import CutError
from mheads.tree.flops import count_macs
from mheads.tree.parts import CutPart, JoinedParts, is_untraced_cut


class Untraceable(nn.Module):  # keyword arguments from a dict and Python control flow on a value
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.mix = nn.Linear(4, 4)

    def encode(self, input_ids, scale):
        h = self.emb(input_ids)
        return {"states": self.mix(h) * (2.0 if float(scale.sum()) > 0 else 1.0)}

    def forward(self, batch):
        return self.encode(**batch)


def headed():
    return HeadedBase(Untraceable(), nn.Linear(4, 3), output="states", pool="mean")


def batch():
    return {
        "input_ids": torch.randint(0, 10, (5, 6), generator=torch.Generator().manual_seed(0)),
        "scale": torch.ones(5),
    }


def test_the_base_cannot_be_traced():  # what makes the cut below worth having
    with pytest.raises(CutError, match="cannot be traced by torch.fx"):
        TreeNet(headed, 2, "base.emb")


def test_the_whole_base_is_one_shared_trunk_and_each_member_has_its_own_head():
    tree = TreeNet(headed, 3, "base", seed=1)
    x = batch()
    out = tree(x)
    assert out.shape == (3, 5, 3)
    base_params = sum(p.numel() for p in Untraceable().parameters())
    assert sum(p.numel() for p in tree.parameters()) == base_params + 3 * (4 * 3 + 3)  # the trunk once
    counts = tree.param_counts()
    assert counts["shared"] == base_params and counts["per_member"] == [base_params + 15] * 3
    assert tree.shared_layers() == ["base"]
    heads = [tree.root.branches[m].layers.head.weight for m in range(3)]
    assert not torch.equal(heads[0], heads[1]) and not torch.equal(heads[1], heads[2])  # drawn per member
    for m in range(3):
        torch.testing.assert_close(tree.member(m)(x), out[m], rtol=0, atol=0)


def test_a_member_file_has_the_headed_base_keys_and_loads_into_it():
    tree = TreeNet(headed, 2, "base", seed=1)
    state = tree.member(1).state_dict()
    net = headed()
    assert state.keys() == net.state_dict().keys()
    net.load_state_dict(state)
    torch.testing.assert_close(net(batch()), tree(batch())[1], rtol=0, atol=0)


def test_member_zero_is_the_headed_base_it_was_cut_from():
    net = headed()
    tree = TreeNet(net, 2, "base", init="pretrained", reinit=["head"])
    assert torch.equal(
        tree.root.layers.base.mix.weight, net.base.mix.weight
    )  # pretrained: the base's weights
    assert not torch.equal(tree.member(0).head.weight, tree.member(1).head.weight)


def test_fused_heads_equal_the_loop():
    tree = TreeNet(headed, 3, "base", seed=2)
    x = batch()
    loop = tree(x)
    tree.exec_mode = "fused"
    torch.testing.assert_close(tree(x), loop)


def test_only_the_offered_cut_is_untraced():
    net = headed()
    assert is_untraced_cut(net, [("base", 2)])
    assert not is_untraced_cut(net, [("base.mix", 2)]) and not is_untraced_cut(net, [("base", 2), ("x", 1)])
    assert not is_untraced_cut(Untraceable(), [("base", 2)])  # no untraced_cut: traced as before


def test_a_cut_that_does_not_give_two_parts_is_refused():
    class Bad(HeadedBase):
        def cut_parts(self):
            return self.base, PooledHead(self.head, self.pool)

    with pytest.raises(TypeError, match="cut_parts: Bad returned Untraceable and PooledHead; expected two"):
        TreeNet(lambda: Bad(Untraceable(), nn.Linear(4, 3), "states", "mean"), 2, "base")


def test_an_untraced_cut_without_cut_parts_is_refused_in_one_line():
    class NoParts(Untraceable):
        untraced_cut = "mix"

    with pytest.raises(TypeError, match=r"^cut_parts: NoParts offers untraced_cut 'mix' but no cut_parts"):
        TreeNet(NoParts, 2, "mix")


def test_joined_parts_refuse_a_module_name_held_twice():
    with pytest.raises(ValueError, match="parts: two parts hold a module named 'base'"):
        JoinedParts([BaseOutput(nn.Linear(2, 2), None), BaseOutput(nn.Linear(2, 2), None)])
    assert issubclass(BaseOutput, CutPart) and issubclass(PooledHead, CutPart)


def test_flops_count_the_shared_base_once():
    def net():
        return HeadedBase(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Linear(8, 3))

    counted = count_macs(TreeNet(net, 3, "base"), (4,))
    assert counted.macs == {
        "root.layers.base.0": 4 * 8,
        **{f"root.branches.{m}.layers.head": 8 * 3 for m in range(3)},
    }
    assert counted.share("root.layers.") == 32 / (32 + 3 * 24)
