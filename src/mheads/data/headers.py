"""The cheap check of a streamed data set before training: every file is non-empty and starts like an image
(its first 12 bytes), so a bad file stops the run with exit 2 naming it before any step, not hours in."""

from __future__ import annotations

from tqdm import tqdm

from mheads.data.errors import DataError
from mheads.data.index import ImageIndex

__all__ = ["check_headers", "header_ok"]

_MAGIC = (
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"P1",
    b"P2",
    b"P3",
    b"P4",
    b"P5",
    b"P6",
)


def header_ok(head: bytes) -> bool:
    """Whether ``head`` (a file's first 12 bytes) starts like an image format Pillow reads."""
    return head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def check_headers(index: ImageIndex, split: str, progress: bool = False) -> list[tuple[int, str]]:
    """``(i, reason)`` for every example whose file is empty or does not start like an image: the cheap check
    run before training (sizes and headers; a file that passes may still fail to decode)."""
    bad = []
    for i in tqdm(
        range(len(index)),
        desc=f"checking {split} files",
        disable=not progress,
        leave=False,
        unit="file",
        mininterval=1.0,
    ):
        try:
            head = index.read(i, 12)
        except DataError as err:
            bad.append((i, str(err)))
            continue
        if not head:
            bad.append((i, f"{index.where(i)}: empty file"))
        elif not header_ok(head):
            bad.append((i, f"{index.where(i)}: not an image (starts with {head[:8]!r})"))
    return bad
