"""Moving named tensors (weights, optimizer buffers) between their owner ranks and the root, point to point.

Used for checkpoints and final weights, not per step, so simplicity wins over bandwidth: a small int64 header
(which keys, their dtypes and shapes) and then one message per tensor.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist

from mheads.dist.faults import collective

__all__ = ["recv_named", "send_named"]

_DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
]
_CODE = {d: i for i, d in enumerate(_DTYPES)}


def send_named(
    named: Mapping[str, torch.Tensor], keys: list[str], dst: int, device: torch.device, group=None
) -> None:
    """Send ``named`` (a subset of ``keys``) to global rank ``dst``, which calls :func:`recv_named`."""
    index = {k: i for i, k in enumerate(keys)}
    header: list[int] = [len(named)]
    for k, t in named.items():
        if k not in index:
            raise KeyError(f"send_named: {k!r} is not a key of this model")
        if t.dtype not in _CODE:
            raise ValueError(f"send_named: {k!r} has dtype {t.dtype}; supported dtypes are {_DTYPES}")
        header += [index[k], _CODE[t.dtype], t.ndim, *t.shape]
    head = torch.tensor(header, dtype=torch.int64, device=device)
    with collective("sending tensors to the root"):
        dist.send(torch.tensor([head.numel()], dtype=torch.int64, device=device), dst=dst, group=group)
        dist.send(head, dst=dst, group=group)
        for t in named.values():
            dist.send(t.detach().to(device).contiguous(), dst=dst, group=group)


def recv_named(keys: list[str], src: int, device: torch.device, group=None) -> dict[str, torch.Tensor]:
    """Receive what global rank ``src`` sent with :func:`send_named`; the tensors come back on the CPU."""
    with collective("receiving tensors from another rank"):
        n = torch.zeros(1, dtype=torch.int64, device=device)
        dist.recv(n, src=src, group=group)
        head = torch.zeros(int(n.item()), dtype=torch.int64, device=device)
        dist.recv(head, src=src, group=group)
        h = head.tolist()
        out: dict[str, torch.Tensor] = {}
        pos = 1
        for _ in range(h[0]):
            i, code, ndim = h[pos], h[pos + 1], h[pos + 2]
            shape = h[pos + 3 : pos + 3 + ndim]
            pos += 3 + ndim
            t = torch.empty(shape, dtype=_DTYPES[code], device=device)
            dist.recv(t, src=src, group=group)
            out[keys[i]] = t.cpu()
    return out
