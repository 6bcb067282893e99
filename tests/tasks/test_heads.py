"""A task's head on top of any base (mheads.tasks.heads, Task.build_head): the layer and its layout per
built-in task, pooling, the eval-mode probe that finds F, and HeadedBase against its definition."""

import pytest
import torch
from torch import nn

from mheads.tasks import Task, classification, custom_task, multi_hypothesis, regression, segmentation
from mheads.tasks.heads import HeadedBase, HeadLayout, feature_shape, head_features, pool_features
from mheads.tree import TreeNet


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "task,width",
    [
        (classification(3), 3),
        (regression(2), 2),
        (regression(2, head="gaussian"), 4),
        (multi_hypothesis(2), 3),
        (custom_task(lambda o, y: o.sum(-1), head_width=5), 5),
    ],
)
def test_linear_heads_give_the_outputs_each_task_reads(task, width):
    head = task.build_head(6)
    assert isinstance(head, nn.Linear) and (head.in_features, head.out_features) == (6, width)
    assert task.head_layout(6) == HeadLayout("linear", 6, width)
    outputs = torch.stack([head(torch.randn(4, 6, generator=gen(m))) for m in range(2)])  # (M, B, W)
    target = torch.randint(0, 3, (4,)) if width == 3 and task.name == "classification" else torch.randn(4, 2)
    if task.name in ("classification", "regression", "multi_hypothesis"):
        task.check(outputs, target)
        assert task.member_losses(outputs, target).shape == (2, 4)


def test_the_gaussian_head_is_means_then_raw_variances():
    task = regression(2, head="gaussian")
    head = task.build_head(3)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([1.0, -2.0, 0.0, -50.0]))  # means, then raw variances
    mean, var = task.moments(head(torch.randn(5, 3)).detach().unsqueeze(0))
    assert torch.equal(mean[0, 0], torch.tensor([1.0, -2.0]))
    assert var[0, 0, 0].item() == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(0.0))) + 1e-6)
    assert var.min() > 0  # softplus plus min_variance: positive however negative the raw output


def test_the_multi_hypothesis_head_ends_in_the_score_logit():
    task = multi_hypothesis(2)
    head = task.build_head(3)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.5, 1.5, -3.0]))
    out = head(torch.randn(4, 3)).unsqueeze(0)
    assert torch.equal(task.hypotheses(out)[0, 0], torch.tensor([0.5, 1.5]))
    assert torch.equal(task.score_logits(out)[0], torch.full((4,), -3.0))


def test_segmentation_gets_a_1x1_convolution_per_pixel():
    task = segmentation(4)
    head = task.build_head(6)
    assert isinstance(head, nn.Conv2d) and head.kernel_size == (1, 1) and head.out_channels == 4
    maps = torch.randn(2, 6, 5, 7)
    logits = head(maps)
    assert logits.shape == (2, 4, 5, 7)
    want = torch.einsum("bfhw,cf->bchw", maps, head.weight[:, :, 0, 0]) + head.bias.view(1, 4, 1, 1)
    assert torch.allclose(logits, want, atol=1e-6)
    task.check(logits.unsqueeze(0), torch.zeros(2, 5, 7, dtype=torch.long))


@pytest.mark.parametrize(
    "task,match",
    [
        (Task(), r"head: task 'task' has no head width"),
        (custom_task(lambda o, y: o.sum(-1)), r"head: task 'custom' has no head width.*head_width=W"),
        (classification(), r"head: task 'classification' has no head width.*num_classes"),
    ],
)
def test_a_task_without_a_head_width_is_refused_in_one_line(task, match):
    with pytest.raises(ValueError, match=match):
        task.build_head(4)


def test_heads_are_drawn_from_the_seeded_generator():
    torch.manual_seed(5)
    a = regression(1).build_head(4)
    torch.manual_seed(5)
    b = regression(1).build_head(4)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_pools_against_their_definitions():
    h = torch.randn(2, 5, 3, generator=gen())  # (B, T, F)
    assert torch.equal(pool_features(h, "mean"), h.mean(1))
    assert torch.equal(pool_features(h, "first"), h[:, 0])
    assert torch.equal(pool_features(h, "last"), h[:, 4])
    maps = torch.randn(2, 3, 4, 6, generator=gen(1))  # (B, F, H, W)
    assert torch.allclose(pool_features(maps, "global_avg"), maps.mean(dim=(2, 3)), atol=1e-6)
    assert pool_features(h, "none") is h


class Encoder(nn.Module):  # a Hugging Face-style sequence encoder: a dict of states out
    def __init__(self):
        super().__init__()
        self.emb = nn.Linear(2, 4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        h = self.drop(self.emb(x))
        return {"last_hidden_state": h, "pooler_output": h[:, 0]}


def test_the_probe_reads_the_named_output_in_eval_mode_and_leaves_the_state_alone():
    net = Encoder().train()
    x = torch.randn(3, 7, 2, generator=gen())
    state = torch.get_rng_state()
    assert feature_shape(net, x, "last_hidden_state", "mean") == (3, 4)
    assert feature_shape(net, x, "pooler_output", "none") == (3, 4)
    assert net.training and net.drop.training  # modes restored
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    "output,pool,match",
    [
        (None, "none", r"output: Encoder returns a dict"),
        ("logits", "none", r"output: got 'logits'; Encoder returns"),
        ("pooler_output", "mean", r"pool: got 'mean', which reads a sequence \(B, T, F\).*\(3, 4\)"),
        ("last_hidden_state", "global_avg", None),  # (B, T, F) read as maps: a shape, refused below
    ],
)
def test_the_probe_names_what_does_not_fit(output, pool, match):
    x = torch.randn(3, 7, 2, generator=gen())
    if match is None:
        assert feature_shape(Encoder(), x, output, pool) == (3, 7)
        return
    with pytest.raises(ValueError, match=match):
        feature_shape(Encoder(), x, output, pool)


def test_head_features_names_the_pool_and_the_fix():
    assert head_features("linear", (2, 9), "none") == 9
    assert head_features("conv", (2, 9, 4, 4), "none") == 9
    with pytest.raises(ValueError, match=r"pool: got 'none'; .*linear.*\(2, 7, 9\): set mean, first or last"):
        head_features("linear", (2, 7, 9), "none")
    with pytest.raises(ValueError, match=r"pool: got 'global_avg'; .*1x1 convolution.*use pool none"):
        head_features("conv", (2, 9), "global_avg")


def test_headed_base_is_head_of_pooled_chosen_output():
    base, head = Encoder().eval(), nn.Linear(4, 2)
    net = HeadedBase(base, head, "last_hidden_state", "last")
    x = torch.randn(3, 7, 2, generator=gen())
    assert torch.equal(net(x), head(base(x)["last_hidden_state"][:, -1]))
    assert [n for n, _ in net.named_children()] == ["base", "head"]
    with pytest.raises(ValueError, match=r"pool: got 'max'"):
        HeadedBase(base, head, None, "max")


def test_headed_base_keeps_the_base_init_scheme():
    class Own(nn.Linear):
        calls = 0

        def init_weights(self):
            Own.calls += 1

    HeadedBase(Own(2, 3), nn.Linear(3, 1)).init_weights()
    assert Own.calls == 1
    HeadedBase(nn.Linear(2, 3), nn.Linear(3, 1)).init_weights()  # no scheme: nothing to call


def test_a_headed_base_cuts_anywhere_in_the_base_each_member_its_own_head():
    base = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4))
    headed = HeadedBase(base, nn.Linear(4, 2))
    tree = TreeNet(headed, 3, "base.0", seed=1, example_input=(2, 3))  # check_cut: member 0 == forward
    assert tree.shared_layers() == ["base.0"]
    heads = [p for n, p in tree.named_parameters() if "head" in n]
    assert len(heads) == 6  # a weight and a bias per member: never shared
    x = torch.randn(4, 3, generator=gen())
    out = tree(x)
    assert out.shape == (3, 4, 2)
    assert not torch.equal(out[0], out[1])  # members drawn from their own seeds, heads included
