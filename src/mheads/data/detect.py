"""Which on-disk layout a data source holds, decided from its file names alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mheads.data import cifar, idx, imagefolder
from mheads.data.dataset import Split
from mheads.data.errors import DataError
from mheads.data.sources import Source

__all__ = ["ACCEPTED_LAYOUTS", "FORMATS", "Format", "Layout", "detect_layout"]

Reader = Callable[[Source, str, str], "tuple[Split, Split, list[str]]"]


@dataclass(frozen=True)
class Format:
    kind: str
    description: str
    match: Callable[[set[str]], list[str] | None]  # None: no sign of it; []: complete; else missing files
    read: Reader


FORMATS = (
    Format("idx", idx.LAYOUT, idx.match, idx.read),
    Format("cifar10-python", cifar.PYTHON10_LAYOUT, cifar.match_python10, cifar.read_python10),
    Format("cifar100-python", cifar.PYTHON100_LAYOUT, cifar.match_python100, cifar.read_python100),
    Format("cifar10-binary", cifar.BINARY10_LAYOUT, cifar.match_binary10, cifar.read_binary10),
    Format("cifar100-binary", cifar.BINARY100_LAYOUT, cifar.match_binary100, cifar.read_binary100),
    Format("image-folder", imagefolder.LAYOUT, imagefolder.match, imagefolder.read),
)
ACCEPTED_LAYOUTS = (
    "; ".join(f.description for f in FORMATS) + "; or a .tar/.tar.gz/.tgz archive of one of these"
)


@dataclass(frozen=True)
class Layout:
    format: Format
    root: str  # folder inside the source holding the data set ("" for the top)


def _where(source: Source, root: str) -> str:
    return source.where(root) if root else str(source.path)


def detect_layout(source: Source) -> Layout:
    """Find the layout at the top of `source`, descending through folders that hold everything.

    Descending lets a user pass ``cifar-10-python.tar.gz`` (all inside ``cifar-10-batches-py/``) or the
    folder above a data set as it was unpacked.
    """
    if not source.files():
        kind = "folder" if source.path.is_dir() else "archive"
        raise DataError(f"{source.path}: the {kind} is empty; expected {ACCEPTED_LAYOUTS}")
    root = ""
    while True:
        names = source.names_under(root)
        for fmt in FORMATS:
            missing = fmt.match(names)
            if missing == []:
                return Layout(fmt, root)
            if missing:
                raise DataError(
                    f"{_where(source, root)}: looks like {fmt.description} but {', '.join(missing)} "
                    f"{'is' if len(missing) == 1 else 'are'} missing"
                )
        tops = {n.split("/", 1)[0] for n in names}
        if len(tops) == 1 and all("/" in n for n in names):
            root = f"{root}/{tops.pop()}" if root else tops.pop()
            continue
        shown = sorted(tops)[:6]
        more = f" and {len(tops) - len(shown)} more" if len(tops) > len(shown) else ""
        raise DataError(
            f"{_where(source, root)}: unrecognised data layout (found {', '.join(shown)}{more}); "
            f"expected {ACCEPTED_LAYOUTS}"
        )
