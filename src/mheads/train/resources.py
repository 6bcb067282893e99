"""The resource check: before a run allocates its ensemble, its optimizer state and its first batch, estimate
what they need and refuse (``ConfigError``, exit 2) when that exceeds the memory available
(:func:`mheads.core.resources.available_memory`: free memory, the process's cgroup limits, ``RLIMIT_AS``),
naming the field that drives the estimate.

Two steps, so that nothing large exists before it is known to fit:

1. :func:`check_model_size`: one member's parameters and buffers counted on the meta device (the base network
   is built there: no memory), times the members and the copies training keeps (weights, gradients,
   optimizer state). A base network whose options make it terabytes is refused here, not by the allocator.
2. :func:`check_resources`, on one real base network: the parameters as above; for training, one member's
   activations for one example, measured by a dry run at batch 1 (eval mode, so no BatchNorm statistic
   moves; the tensors autograd saves for the backward pass are counted), times ``train.batch_size`` and the
   members alive at once, plus the input batch with its padding; for evaluation (no autograd), the largest
   input-plus-output of any layer for one example, times ``train.eval_batch_size`` and the members, plus the
   input and logit batches. Training and evaluation do not overlap, so the larger of the two counts. Batches a
   streaming loader's workers decode ahead (``queued``) are counted in both.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from mheads.config import Config, ConfigError
from mheads.config.schema import PYTHON_MODEL
from mheads.core.resources import available_memory, gib

__all__ = ["check_model_size", "check_resources", "estimate_bytes", "parameter_bytes"]

# copies of the parameters a training step keeps: weights and gradients, plus the optimizer's state
_COPIES = {"sgd": 3, "adamw": 4}
_HEADROOM = 0.9  # leave a tenth of the available memory to everything else


@torch.no_grad()
def _count(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def parameter_bytes(factory: Callable[[], nn.Module]) -> int:
    """Bytes of the parameters and buffers of the network ``factory()`` builds, built on the meta device
    (shapes only: nothing is allocated, whatever its size)."""
    with torch.device("meta"):
        net = factory()
    return sum(t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers()))


def check_model_size(
    cfg: Config,
    factory: Callable[[], nn.Module],
    device: torch.device | str = "cpu",
    *,
    what: str | None = None,
) -> int | None:
    """Refuse (``ConfigError``) a model whose ``model.members`` copies of ``factory()``'s network, with the
    gradients and optimizer state training keeps, need more memory than ``device`` has, before any of it is
    allocated. Returns one member's bytes, or None where the network cannot be built on the meta device (a
    factory that computes with real tensors: the real build and :func:`check_resources` then decide).
    ``what`` names the network in the message (default: ``model.name``)."""
    try:
        one = parameter_bytes(factory)
    except Exception:  # noqa: BLE001 - not buildable on meta; the real build reports its own errors
        return None
    m = cfg.model
    copies = _COPIES.get(cfg.optim.name, 4)
    need, avail = one * copies * m.members, available_memory(device)
    if need <= _HEADROOM * avail:
        return one
    what, on = what or m.name, torch.device(device).type
    if one * copies > _HEADROOM * avail:  # one member alone does not fit: its own size is the problem
        field, value = ("model.options", m.options) if m.options else ("model.name", m.name)
        if m.name == PYTHON_MODEL:  # a module or factory given to mheads.fit
            field, value = "model", what
        raise ConfigError(
            f"{field}: got {value!r}; one member of {what} would need about "
            f"{gib(one * copies)} (parameters {gib(one)}, with gradients and optimizer state) "
            f"but {gib(avail)} of memory is available on {on}; choose a smaller network"
        )
    raise ConfigError(
        f"model.members: got {m.members}; this run would need about {gib(need)} (parameters "
        f"{gib(need)}: {m.members} members of {what} of {gib(one)}, with gradients and "
        f"optimizer state) but {gib(avail)} of memory is available on {on}; lower it"
    )


def _tensor_bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_tensor_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    return 0


def _dry_run(base: nn.Module, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """One example through ``base`` (eval mode, CPU): ``(saved, peak, output)``. ``saved``: the bytes autograd
    keeps for the backward pass, each storage once, the parameters' own storages (saved by every layer, but
    not per example) left out. ``peak``: the largest input plus output of any layer (what evaluation, without
    autograd, holds at once). ``output``: the bytes of its output (the logits)."""
    params = {p.untyped_storage().data_ptr() for p in base.parameters()}
    seen: set[int] = set()
    saved = 0
    peak = 0

    def pack(t):
        nonlocal saved
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params and ptr not in seen:
            seen.add(ptr)
            saved += t.untyped_storage().nbytes()
        return t

    def layer(module, args, output):
        nonlocal peak
        peak = max(peak, _tensor_bytes(args) + _tensor_bytes(output))

    was = base.training
    base.eval()
    x = torch.zeros(1, *shape, requires_grad=True)
    hooks = [m.register_forward_hook(layer) for m in base.modules()]
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = base(x)
    finally:
        for h in hooks:
            h.remove()
        base.train(was)
    return saved + x.numel() * x.element_size(), peak, _tensor_bytes(out)


def estimate_bytes(
    cfg: Config,
    base: nn.Module,
    shape: tuple[int, int, int],
    include_parameters: bool = True,
    queued: int = 0,
    eval_examples: int | None = None,
) -> dict[str, int]:
    """The estimate's parts in bytes: ``parameters`` (all members, with gradients and optimizer state),
    ``activations`` (one training batch through the members alive at once), ``inputs`` (the padded batch,
    and the ``queued`` uint8 batches a streaming loader decodes ahead) and ``evaluation`` (one batch of
    ``train.eval_batch_size``, or of the ``eval_examples`` the largest evaluated split has when fewer,
    through every member, with its inputs and logits)."""
    t, d, M = cfg.train, cfg.data, cfg.model.members
    params = _count(base) * M * _COPIES.get(cfg.optim.name, 4) if include_parameters else 0
    alive = 1 if cfg.loss.name == "independent_ce" and cfg.model.split is None else M
    saved, peak, logits = _dry_run(base, shape)
    acts = saved * t.batch_size * alive
    c, h, w = shape
    p = d.crop_padding
    inputs = t.batch_size * c * (h + 2 * p) * (w + 2 * p) * 4 * 3  # uint8 gather, float, padded and cropped
    inputs += queued * t.batch_size * c * h * w
    e = t.eval_batch_size if eval_examples is None else min(t.eval_batch_size, eval_examples)
    # every member's largest layer, the float batch and its uint8 source, the (M, B, C) logits and their copy
    evaluation = e * (peak * M + c * h * w * (5 + queued) + 2 * M * logits)
    return {"parameters": params, "activations": acts, "inputs": inputs, "evaluation": evaluation}


def check_resources(
    cfg: Config,
    base: nn.Module,
    shape: tuple[int, int, int],
    device: torch.device,
    include_parameters: bool = True,
    queued: int = 0,
    eval_examples: int | None = None,
) -> dict[str, int]:
    """Raise ``ConfigError`` naming the field when the estimate (:func:`estimate_bytes`) exceeds the available
    memory; returns the estimate otherwise."""
    parts = estimate_bytes(cfg, base, shape, include_parameters, queued, eval_examples)
    total = parts["parameters"] + max(parts["activations"] + parts["inputs"], parts["evaluation"])
    avail = available_memory(device)
    if total <= _HEADROOM * avail:
        return parts
    t, d, m = cfg.train, cfg.data, cfg.model
    field, value = max(
        (
            ("model.members", m.members, parts["parameters"]),
            ("train.batch_size", t.batch_size, parts["activations"]),
            ("data.crop_padding", d.crop_padding, parts["inputs"]),
            ("train.eval_batch_size", t.eval_batch_size, parts["evaluation"]),
        ),
        key=lambda f: f[2],
    )[:2]
    detail = ", ".join(f"{k} {gib(v)}" for k, v in parts.items() if v)
    raise ConfigError(
        f"{field}: got {value}; this run would need about {gib(total)} ({detail}) but "
        f"{gib(avail)} of memory is available on {device.type}; lower it"
    )
