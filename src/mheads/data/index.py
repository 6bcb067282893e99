"""Where each image of a streamed data set lives, without decoding any: an :class:`ImageIndex` per split.

Three layouts are indexed for streaming (``data.loader: stream``):

- an image folder, ``train/<class>/*.jpg`` and ``test/<class>/...`` (or ``val/``), ImageNet's layout;
- the same tree inside an uncompressed ``.tar`` (one file, members read in place at their byte offsets);
- WebDataset shards: a folder of ``.tar`` files whose names contain ``train`` or ``test``/``val``, each
  sample a group of members sharing a key (``0001.jpg`` + ``0001.cls``, the label as decimal text), with an
  optional ``classes.txt`` beside them naming the labels in order.

Shards are read by byte offset rather than through the ``webdataset`` package: its datasets are iterable
streams with shuffle buffers, while exact resume needs batch ``b`` to be a pure function of the seed and
``b`` (``data.batching.BatchPlan``), i.e. random access to example ``i``; an uncompressed tar member is a
contiguous byte range, so an index of (shard, offset, size) gives that access at the cost of one header scan.

The index is compact on purpose: names are one UTF-8 buffer with end offsets and the rest are numpy arrays,
so DataLoader workers forked from the training process share it page for page (a list of 200,000 Python
strings would be copied into every worker as reference counts change).
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mheads.data.decode import MAX_IMAGE_BYTES
from mheads.data.errors import DataError
from mheads.data.files import check_name, display, read_regular, skipped, walk_files
from mheads.data.imagefolder import IMAGE_SUFFIXES, images_by_split, natural_key, ordered_files
from mheads.data.labels import CLASSES_FILE, read_classes_file
from mheads.data.shard_samples import Sample, shard_classes, shard_samples, tar_members
from mheads.data.sources import ARCHIVE_SUFFIXES, ArchiveSource, DirSource
from mheads.data.tars import TarReader

__all__ = ["ImageIndex", "StreamIndex", "index_source", "streamable"]

_TEST_SPLITS = ("test", "val")
_MAX_OPEN = 128  # tar descriptors kept open per process


class ImageIndex:
    """The images of one split: example ``i`` is file ``names[i]`` under ``root`` (``container[i] == -1``) or
    bytes ``offsets[i] : offsets[i] + sizes[i]`` of the tar file ``containers[container[i]]``."""

    def __init__(
        self,
        root: Path,
        blob: np.ndarray,
        ends: np.ndarray,
        labels: np.ndarray,
        *,
        containers=(),
        container=None,
        offsets=None,
        sizes=None,
    ):
        self.root = str(root)
        self._blob, self._ends = np.asarray(blob, np.uint8), np.asarray(ends, np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.containers = tuple(str(c) for c in containers)
        n = len(self.labels)
        self.container = np.full(n, -1, np.int32) if container is None else np.asarray(container, np.int32)
        self.offsets = np.zeros(n, np.int64) if offsets is None else np.asarray(offsets, np.int64)
        self.sizes = np.full(n, -1, np.int64) if sizes is None else np.asarray(sizes, np.int64)
        self._fds: dict[int, int] = {}  # container -> descriptor, in order of use

    @classmethod
    def from_names(cls, root: Path, names: list[str], labels, **kw) -> ImageIndex:
        encoded = [n.encode("utf-8") for n in names]
        blob = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, np.uint8)
        return cls(root, blob, np.cumsum([len(e) for e in encoded], dtype=np.int64), labels, **kw)

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fds"] = {}  # file descriptors do not cross processes by pickling
        return state

    def name(self, i: int) -> str:
        start = int(self._ends[i - 1]) if i > 0 else 0
        return bytes(self._blob[start : int(self._ends[i])]).decode("utf-8")

    def where(self, i: int) -> str:
        """How messages name example ``i``: its file path, or ``shard.tar:member``."""
        c = int(self.container[i])
        if c < 0:
            return os.path.join(self.root, self.name(i))
        return f"{self.containers[c]}:{self.name(i)}"

    def _fd(self, c: int) -> int:
        """An open descriptor of container ``c``. A forked worker uses the ones it inherited (``pread`` moves
        no shared offset); at most ``_MAX_OPEN`` stay open per process, least recently used closed first, so a
        set of thousands of shards stays under the open-file limit."""
        fd = self._fds.pop(c, None)
        if fd is None:
            while len(self._fds) >= _MAX_OPEN:
                os.close(self._fds.pop(next(iter(self._fds))))
            fd = os.open(self.containers[c], os.O_RDONLY)
        self._fds[c] = fd  # most recently used last
        return fd

    def read(self, i: int, limit: int | None = None) -> bytes:
        """The bytes of example ``i`` (the first ``limit`` of them when given)."""
        c = int(self.container[i])
        if c < 0:  # a file: regular files only, bounded before reading (mheads.data.files)
            return read_regular(
                os.path.join(self.root, self.name(i)), self.where(i), limit=limit, max_bytes=MAX_IMAGE_BYTES
            )
        if int(self.sizes[i]) > MAX_IMAGE_BYTES:
            raise DataError(
                f"{self.where(i)}: member of {int(self.sizes[i]):,} bytes; image files above "
                f"{MAX_IMAGE_BYTES:,} bytes are refused before reading"
            )
        try:
            size = int(self.sizes[i]) if limit is None else min(limit, int(self.sizes[i]))
            data = os.pread(self._fd(c), size, int(self.offsets[i]))
        except OSError as exc:
            raise DataError(f"{self.where(i)}: cannot read ({exc.strerror or exc})") from exc
        if len(data) < size:
            raise DataError(f"{self.where(i)}: truncated ({len(data)} of {size} bytes readable)")
        return data

    def size(self, i: int) -> int:
        c = int(self.container[i])
        if c >= 0:
            return int(self.sizes[i])
        try:
            return os.stat(os.path.join(self.root, self.name(i))).st_size
        except OSError as exc:
            raise DataError(f"{self.where(i)}: cannot read ({exc.strerror or exc})") from exc


@dataclass(frozen=True, eq=False)
class StreamIndex:
    """A streamed data set: both splits' indexes and the class names in label order."""

    train: ImageIndex
    test: ImageIndex
    classes: list[str]
    kind: str  # "image folder" | "tar" | "shards"


def _split_dirs(p: Path) -> tuple[Path | None, Path | None]:
    train = p / "train"
    test = next((p / s for s in _TEST_SPLITS if (p / s).is_dir()), None)
    return (train if train.is_dir() else None), test


def _class_dirs(folder: Path) -> list[str]:
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not skipped(e.name))
    except OSError as exc:
        raise DataError(f"{display(folder)}: cannot list the folder ({exc.strerror or exc})") from exc
    for name in names:
        check_name(folder / name)
    return names


def _tars(p: Path) -> list[str]:
    """``.tar`` files at the top of ``p`` or in its train/, test/ or val/ folders, relative to ``p``."""
    return [
        q.relative_to(p).as_posix()
        for folder in (p, p / "train", p / "test", p / "val")
        if folder.is_dir()
        for q in folder.iterdir()
        if q.name.endswith(".tar") and q.is_file()
    ]


def streamable(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` is a layout the streaming loader reads (see the module docstring); cheap: it lists
    the top folders only."""
    if path is None:
        return False
    p = Path(path).expanduser()
    if p.is_dir():
        train, _ = _split_dirs(p)
        return bool(train is not None and _class_dirs(train)) or bool(_tars(p))
    return p.is_file() and p.name.lower().endswith(".tar") and _plain_tar(p)


def _plain_tar(p: Path) -> bool:
    try:
        with TarReader(p, plain_only=True):  # reads the first header only, bounded
            return True
    except DataError:
        return False


def index_source(path: str | os.PathLike) -> StreamIndex:
    """Index the data set at ``path`` for streaming; raises :class:`DataError` naming what is wrong."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data.source {p}: no such file or folder")
    if p.is_file():
        if p.name.lower().endswith(ARCHIVE_SUFFIXES) and not p.name.lower().endswith(".tar"):
            raise DataError(
                f"data.source {p}: a compressed archive cannot be read at random, which streaming "
                "needs; extract it (tar xf) or write it as plain .tar, or use data.loader: resident"
            )
        return _index_tar(p)  # its scan names what is wrong with a tar that is not plain and complete
    train, test = _split_dirs(p)
    if train is not None and _class_dirs(train):
        return _index_folder(p, train, test)
    shards = _tars(p)
    if shards:
        return _index_shards(p, shards, {CLASSES_FILE} if _present(p / CLASSES_FILE) else set())
    raise DataError(
        f"data.source {p}: no train/<class>/ images and no .tar shards found; expected an image "
        "folder (train/<class>/*.jpg, test/<class>/...), a plain .tar of one, or a folder of "
        "WebDataset shards (*train*.tar, *test*.tar)"
    )


class _Builder:
    """Names appended one by one into one byte buffer: no list of Python strings for a whole split."""

    def __init__(self):
        self.blob, self.ends, self.labels = bytearray(), array("q"), array("q")

    def add(self, name: str, label: int) -> None:
        self.blob += name.encode("utf-8")
        self.ends.append(len(self.blob))
        self.labels.append(label)

    def build(self, root: Path) -> ImageIndex:
        return ImageIndex(
            root,
            np.frombuffer(bytes(self.blob), np.uint8),
            np.frombuffer(self.ends, np.int64),
            np.frombuffer(self.labels, np.int64),
        )


def _images_under(p: Path, folder: Path) -> list[str]:
    """Image files below ``folder`` (any depth), named relative to the data set's root ``p``; walked by the
    rules every folder reader shares (:func:`mheads.data.files.walk_files`)."""
    return [n for n in walk_files(p, folder) if os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES]


def _index_folder(p: Path, train: Path, test: Path | None) -> StreamIndex:
    """An image folder, one class folder at a time, in the resident reader's order (label, then natural file
    order), so example ``i`` is the same image whichever loader reads the set."""
    if test is None:
        raise DataError(
            f"data.source {p}: no test (or val)/<class>/ images; expected train/<class>/*.jpg and "
            "test/<class>/*.jpg"
        )
    train_classes, test_classes = _class_dirs(train), _class_dirs(test)
    for cls in test_classes:
        if cls not in train_classes:
            raise DataError(
                f"{test / cls}: class folder has no matching train/{cls} folder; "
                f"training classes are {train_classes}"
            )
    if _present(p / CLASSES_FILE):
        classes = read_classes_file(DirSource(p), CLASSES_FILE)
        for cls in train_classes:
            if cls not in classes:
                raise DataError(
                    f"{train / cls}: class folder is not listed in {p / CLASSES_FILE}; listed "
                    f"classes are {classes}"
                )
    else:
        classes = train_classes
    splits = []
    for folder, present in ((train, set(train_classes)), (test, set(test_classes))):
        builder = _Builder()
        for label, cls in enumerate(classes):
            if cls in present:
                for name in sorted(_images_under(p, folder / cls), key=natural_key):
                    builder.add(name, label)
        if not builder.ends:
            raise DataError(
                f"{folder}: no images in its class folders; expected "
                f"{'/'.join(sorted(s[1:] for s in IMAGE_SUFFIXES))} files"
            )
        splits.append(builder.build(p))
    return StreamIndex(splits[0], splits[1], classes, "image folder")


def _index_tar(p: Path) -> StreamIndex:
    """An image folder inside one uncompressed tar, in the resident reader's file order, read in place."""
    members = tar_members(p)
    if not images_by_split(set(members)):
        raise DataError(
            f"data.source {p}: the tar holds no train/<class>/ images; a single tar must hold an "
            "image folder (WebDataset shards go in a folder: *train*.tar and *test*.tar)"
        )
    with ArchiveSource(p) as source:
        classes, splits = ordered_files(source, "")
    train, test = (
        ImageIndex.from_names(
            p.parent,
            files,
            labels,
            containers=[str(p)],
            container=[0] * len(files),
            offsets=[members[f].offset_data for f in files],
            sizes=[members[f].size for f in files],
        )
        for files, labels in splits
    )
    return StreamIndex(train, test, classes, "tar")


def _index_shards(p: Path, shards: list[str], files: set[str]) -> StreamIndex:
    """WebDataset-style shards in the folder ``p`` (``files``: its files), ``*train*.tar`` and ``*test*.tar``
    (or ``val``): each sample an image member and a label member sharing a key, read in place."""
    per_split, containers = shard_samples(p, shards)
    classes = shard_classes(p, per_split, containers, files)
    train, test = (_samples_index(p, per_split[split], containers) for split in ("train", "test"))
    return StreamIndex(train, test, classes, "shards")


def _samples_index(p: Path, rows: list[Sample], containers: list[str]) -> ImageIndex:
    """One split's samples as an index of byte ranges in the shards."""
    return ImageIndex.from_names(
        p,
        [r.name for r in rows],
        [r.label for r in rows],
        containers=containers,
        container=[r.container for r in rows],
        offsets=[r.offset for r in rows],
        sizes=[r.size for r in rows],
    )


def _present(path: Path) -> bool:
    """Anything at ``path``, a FIFO or a device included: reading it then refuses what is not a regular file,
    by name, rather than skipping it silently."""
    return path.exists() or path.is_symlink()
