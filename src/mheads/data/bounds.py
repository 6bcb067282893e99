"""How many bytes one file, one archive member or one decompressed stream may hold to be read whole.

Sizes come from untrusted places (a tar header, an idx header, a file someone handed over), so every whole
read is checked against :func:`read_limit` before anything is allocated, and the bytes actually produced
are counted too (a decompressor or a growing file can give more than any header said).
"""

from __future__ import annotations

from typing import IO

from mheads.core.resources import available_memory, gib
from mheads.data.errors import DataError

__all__ = ["MAX_READ_BYTES", "read_at_most", "read_limit", "too_big"]

# No file of a supported layout comes near this: CIFAR-100's train batch is 155 MB, EMNIST's largest idx
# file 550 MB. It keeps the bound finite where the memory check sees no limit.
MAX_READ_BYTES = 4 * 2**30


def read_limit() -> int:
    """The largest file or member read whole: a third of the memory available now (the raw bytes, a decoded
    copy and the data set read so far share it), and at most `MAX_READ_BYTES`."""
    return min(MAX_READ_BYTES, available_memory() // 3)


def too_big(where: str, size: int, limit: int, what: str = "holds") -> DataError:
    """The error for `where` holding (or asking for: `what`) `size` bytes above `limit`."""
    return DataError(
        f"{where}: {what} {size} bytes ({gib(size)}), above the limit of {gib(limit)} for one file read "
        "whole; expected a smaller file (is it corrupt, or a decompression bomb?)"
    )


def read_at_most(handle: IO[bytes], size: int, limit: int, where: str) -> bytes:
    """Read `size` bytes from `handle` (all of them), refusing before allocating when `size` is above `limit`
    and after reading when the handle gives more than `size` (never more than one byte over)."""
    if size > limit:
        raise too_big(where, size, limit)
    data = handle.read(size + 1)
    if len(data) > size:
        raise DataError(
            f"{where}: gives more than the {size} bytes its size says (a file growing while "
            "read, or not a regular file); expected a file that stays as it is"
        )
    return data
