"""The resource check: before a run allocates its ensemble, its optimizer state and its first batch, estimate
what they need and refuse (``ConfigError``, exit 2) when that exceeds the memory available, naming the field
that drives the estimate. The estimate: one member's parameter count (one base network is built, never M)
times the members and the copies training keeps (weights, gradients, optimizer state); one member's
activations for one example, measured by a dry run at batch 1 (eval mode, so no BatchNorm statistic moves;
the tensors autograd saves for the backward pass are counted), times the batch size and the members alive at
once; and the input batch with its padding."""

from __future__ import annotations

import torch
from torch import nn

from mheads.config import Config, ConfigError
from mheads.core.resources import available_memory, gib

__all__ = ["check_resources", "estimate_bytes"]

# copies of the parameters a training step keeps: weights and gradients, plus the optimizer's state
_COPIES = {"sgd": 3, "adamw": 4}
_HEADROOM = 0.9  # leave a tenth of the available memory to everything else


@torch.no_grad()
def _count(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _activation_bytes(base: nn.Module, shape: tuple[int, int, int]) -> int:
    """Bytes autograd saves for the backward pass of one example through ``base`` (eval mode, CPU): each
    saved storage once, the parameters' own storages (saved by every layer, but not per example) left out."""
    params = {p.untyped_storage().data_ptr() for p in base.parameters()}
    seen: set[int] = set()
    saved = 0

    def pack(t):
        nonlocal saved
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params and ptr not in seen:
            seen.add(ptr)
            saved += t.untyped_storage().nbytes()
        return t

    was = base.training
    base.eval()
    x = torch.zeros(1, *shape, requires_grad=True)
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            base(x)
    finally:
        base.train(was)
    return saved + x.numel() * x.element_size()


def estimate_bytes(cfg: Config, base: nn.Module, shape: tuple[int, int, int],
                   include_parameters: bool = True) -> dict[str, int]:
    """The estimate's parts in bytes: ``parameters`` (all members, with gradients and optimizer state),
    ``activations`` (one batch through the members alive at once) and ``inputs`` (the padded batch)."""
    t, d, M = cfg.train, cfg.data, cfg.model.members
    params = _count(base) * M * _COPIES.get(cfg.optim.name, 4) if include_parameters else 0
    alive = 1 if cfg.loss.name == "independent_ce" and cfg.model.split is None else M
    acts = _activation_bytes(base, shape) * t.batch_size * alive
    c, h, w = shape
    p = d.crop_padding
    inputs = t.batch_size * c * (h + 2 * p) * (w + 2 * p) * 4 * 3  # uint8 gather, float, padded and cropped
    return {"parameters": params, "activations": acts, "inputs": inputs}


def check_resources(cfg: Config, base: nn.Module, shape: tuple[int, int, int], device: torch.device,
                    include_parameters: bool = True) -> dict[str, int]:
    """Raise ``ConfigError`` naming the field when the estimate exceeds the available memory; returns the
    estimate otherwise."""
    parts = estimate_bytes(cfg, base, shape, include_parameters)
    total = sum(parts.values())
    avail = available_memory(device)
    if total <= _HEADROOM * avail:
        return parts
    t, d, m = cfg.train, cfg.data, cfg.model
    field, value = max((("model.members", m.members, parts["parameters"]),
                        ("train.batch_size", t.batch_size, parts["activations"]),
                        ("data.crop_padding", d.crop_padding, parts["inputs"])), key=lambda f: f[2])[:2]
    detail = ", ".join(f"{k} {gib(v)}" for k, v in parts.items() if v)
    raise ConfigError(f"{field}: got {value}; this run would need about {gib(total)} ({detail}) but "
                      f"{gib(avail)} of memory is available on {device.type}; lower it")
