"""The things the benchmarks time: training steps and inference passes of mheads and
of the plain PyTorch loop.

Both sides get the same in-memory batches, the same layout (channels_last unless switched off), the same loss
(each member's mean cross-entropy) and the same SGD hyperparameters (Caffe's CIFAR10-Quick recipe by default,
``RESNET_SGD_KW`` for the ResNets). The plain side is what people write without a library: M separate
``nn.Module`` s, each with its own optimizer, trained one after another.
"""

from __future__ import annotations

import itertools
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from mheads.ensemble.losses import compute_loss, independent_ce
from mheads.models import create_model, model_factory
from mheads.train.compiled import gradient_error
from mheads.train.step import member_by_member
from mheads.tree.cut import cut_module
from mheads.tree.treenet import TreeNet

SGD_KW = dict(lr=0.001, momentum=0.9, weight_decay=0.004)
RESNET_SGD_KW = dict(lr=0.1, momentum=0.9)


@dataclass(frozen=True)
class Setup:
    device: torch.device
    model: str = "cifar10_quick"
    channels_last: bool = True
    bf16: bool = False
    compile: bool = False

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()


def make_batches(
    setup: Setup, batch: int, n: int = 4, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n in-memory batches: images (B, 3, 32, 32) in the chosen layout, labels (B,)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = (
            torch.randn(batch, 3, 32, 32, generator=g)
            .to(setup.device)
            .contiguous(memory_format=setup.memory_format)
        )
        y = torch.randint(0, 10, (batch,), generator=g).to(setup.device)
        out.append((x, y))
    return out


def make_tree(setup: Setup, members: int, split, exec_mode: str = "loop", seed: int = 0) -> TreeNet:
    net = TreeNet(model_factory(setup.model), members, split, seed=seed, exec_mode=exec_mode)
    return net.to(device=setup.device, memory_format=setup.memory_format)


def base_model(setup: Setup) -> nn.Module:
    """One ``setup.model`` on the setup's device, in its layout."""
    return create_model(setup.model).to(device=setup.device, memory_format=setup.memory_format)


def plain_models(setup: Setup, like: TreeNet) -> list[nn.Module]:
    """Separate base networks holding copies of ``like``'s member weights (same math, separate modules)."""
    models = []
    for m in range(like.num_members):
        net = base_model(setup)
        net.load_state_dict(like.member(m).state_dict())
        models.append(net)
    return models


def fx_chain(model: nn.Module, points: list[str]) -> nn.Sequential:
    """``model`` cut with torch.fx after each module of ``points`` (:func:`mheads.tree.cut.cut_module`), its
    segments chained: the same function on the same (shared) parameters, run the way a TreeNet runs a
    traced base."""
    return nn.Sequential(*cut_module(model, points))


def named_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The registry loss ``name`` (:func:`mheads.ensemble.losses.compute_loss`) as ``(logits, y) -> loss``,
    the way training computes it."""
    return lambda logits, y: compute_loss(name, logits, y).loss


def _maybe_compile(setup: Setup, module: nn.Module) -> Callable:
    return torch.compile(module) if setup.compile else module


def plain_train_step(
    setup: Setup, models: list[nn.Module], batches, sgd: dict | None = SGD_KW
) -> Callable[[], None]:
    """One step of the plain loop: for each model, zero_grad, forward, cross-entropy, backward, its own SGD
    step (``sgd``: its keyword arguments; None: forward and backward only, no optimizer)."""
    fwds = [_maybe_compile(setup, m) for m in models]
    opts = [torch.optim.SGD(m.parameters(), **sgd) if sgd is not None else None for m in models]
    data = itertools.cycle(batches)

    def step() -> None:
        x, y = next(data)
        for model, fwd, opt in zip(models, fwds, opts):
            (opt if opt is not None else model).zero_grad(set_to_none=True)
            with setup.autocast():
                out = fwd(x)
            F.cross_entropy(out.float(), y).backward()
            if opt is not None:
                opt.step()

    return step


def mheads_train_step(
    setup: Setup,
    net: nn.Module,
    batches,
    forward: Callable | None = None,
    sgd: dict = SGD_KW,
    loss: Callable = independent_ce,
) -> Callable[[], None]:
    """One step of a TreeNet: one forward to member logits (M, B, C), the summed member losses (``loss``), one
    backward, one SGD step over all parameters (the gradients equal the per-member optimizers')."""
    fwd = forward if forward is not None else _maybe_compile(setup, net)
    opt = torch.optim.SGD(net.parameters(), **sgd)
    data = itertools.cycle(batches)

    def step() -> None:
        x, y = next(data)
        opt.zero_grad(set_to_none=True)
        with setup.autocast():
            logits = fwd(x)
        loss(logits.float(), y).backward()
        opt.step()

    return step


def mheads_member_step(setup: Setup, net: nn.Module, batches, sgd: dict = SGD_KW) -> Callable[[], None]:
    """One step of independent members the way ``fit`` takes it when the loss separates by member
    (``mheads.train.step.member_by_member``): each member's forward and backward in turn, one SGD step."""
    opt = torch.optim.SGD(net.parameters(), **sgd)
    data = itertools.cycle(batches)

    def step() -> None:
        x, y = next(data)
        opt.zero_grad(set_to_none=True)
        member_by_member(net, x, y, None, autocast=setup.autocast)
        opt.step()

    return step


def plain_inference(setup: Setup, models: list[nn.Module], x: torch.Tensor) -> Callable[[], object]:
    fwds = [_maybe_compile(setup, m.eval()) for m in models]

    def run():
        with torch.inference_mode(), setup.autocast():
            return [f(x) for f in fwds]

    return run


def mheads_inference(setup: Setup, net: nn.Module, x: torch.Tensor, forward: Callable | None = None):
    net.eval()
    fwd = forward if forward is not None else _maybe_compile(setup, net)

    def run():
        with torch.inference_mode(), setup.autocast():
            return fwd(x)

    return run


def vmap_forward(net: TreeNet) -> Callable[[torch.Tensor], torch.Tensor]:
    """The torch.func alternative to :mod:`mheads.tree.fused` for one-level trees: the trunk once, then
    ``vmap(functional_call)`` over the branches' parameters, stacked at every call so gradients reach them."""
    if any(len(b.branches) for b in net.root.branches):
        raise ValueError("vmap_forward: only one-level trees (a single split point) are supported")
    template = net.root.branches[0].layers
    names = [n for n, _ in template.named_parameters()]
    branch_params = [dict(b.layers.named_parameters()) for b in net.root.branches]

    def call(params, h):
        return functional_call(template, params, (h,))

    batched = vmap(call, in_dims=(0, None), randomness="different")

    def forward(x: torch.Tensor) -> torch.Tensor:
        h = net.root.layers(x)
        params = {n: torch.stack([p[n] for p in branch_params]) for n in names}
        return batched(params, h)

    return forward


def compile_gradient_error(setup: Setup, net: TreeNet, batch) -> float:
    """Largest relative gradient difference between ``torch.compile(net)`` and eager on one batch (see
    :mod:`mheads.train.compiled`: a compiled benchmark must show this is ~0 first)."""
    x, y = batch
    with setup.autocast():
        return gradient_error(net, torch.compile(net), x, y)
