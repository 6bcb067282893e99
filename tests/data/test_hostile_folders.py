"""A data folder someone hands over: FIFOs and devices named like images, a 12 GiB file with a JPEG magic,
names that are not UTF-8, links out of the folder. Every folder reader (resident, the streaming index and its
header check, ``mheads shard``, predict's file read) refuses them with one line naming the file, in bounded
time and memory: the cases that could hang or allocate run in a child process under a timeout and an
address-space cap (tests/memcap.py), so a regression fails the test instead of the machine."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
from data_writers import image_bytes

from memcap import mheads_capped, run_capped
from mheads.data import DataError, load_dataset
from mheads.data.index import index_source

PNG = image_bytes(np.zeros((1, 4, 4), np.uint8), "PNG")

# Every reader of a folder, in one child: what each says about the data set at argv[1] (a JSON {case: root}).
READERS = r"""
import json, sys
from mheads.data import DataError, load_dataset
from mheads.data.decode import read_image_file
from mheads.data.headers import check_headers
from mheads.data.index import ImageIndex, index_source
from mheads.data.shards import write_shards

def said(fn):
    try:
        return "ok: " + repr(fn())
    except DataError as err:
        return str(err)

out = {}
for case, (root, image) in json.loads(sys.argv[1]).items():
    out[case] = {
        "index": said(lambda: [r for _, r in check_headers(index_source(root).train, "train")]),
        "resident": said(lambda: len(load_dataset(root, cache=False).train)),
        "shard": said(lambda: len(write_shards(root, root + "-shards"))),
        "predict": said(lambda: len(read_image_file(image))),
    }
big_member = ImageIndex.from_names(".", ["x.jpg"], [0], containers=[sys.executable], container=[0],
                                   offsets=[0], sizes=[2**40])  # a tar header's size of 1 TiB
out["tar member"] = {"read": said(lambda: len(big_member.read(0)))}
print(json.dumps(out))
"""


def _folder(root, bad_name: str | None = None):
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
        (root / split / "a" / "0.png").write_bytes(PNG)
    return root / "train" / "a" / (bad_name or "x.jpg")


def test_fifos_devices_and_huge_files_are_refused_by_every_reader_in_bounded_time_and_memory(tmp_path):
    fifo = _folder(tmp_path / "fifo")
    os.mkfifo(fifo)
    zero = _folder(tmp_path / "zero")
    zero.symlink_to("/dev/zero")
    big = _folder(tmp_path / "big")
    with open(big, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0")
        f.truncate(12 * 2**30)  # sparse: 12 GiB that costs no disk
    cases = {
        "fifo": (str(tmp_path / "fifo"), str(fifo)),
        "zero": (str(tmp_path / "zero"), "/dev/zero"),
        "big": (str(tmp_path / "big"), str(big)),
    }
    done = run_capped(["-c", READERS, json.dumps(cases)], timeout=90)  # a FIFO opened blocking never returns
    assert done.returncode == 0, done.stderr[-2000:]
    said = json.loads(done.stdout)
    fifo_said = f"{fifo}: a FIFO (named pipe), not a regular file; a data folder may hold only regular files"
    for reader in ("index", "resident", "shard", "predict"):
        assert said["fifo"][reader].startswith(fifo_said)
        assert said["big"][reader].startswith(
            f"ok: ['{big}: file is 12,884,901,888 bytes; files above 536,870,912 bytes (512 MiB) are refused"
            if reader == "index"
            else f"{big}: file is 12,884,901,888 bytes; files above 536,870,912 bytes"
        )
    for reader in ("index", "resident", "shard"):  # the link itself is refused before anything is opened
        assert said["zero"][reader] == (
            f"{zero}: symbolic link to /dev/zero, outside the data folder "
            f"{tmp_path / 'zero'}; copy the files into it rather than linking "
            "out"
        )
    assert said["zero"]["predict"].startswith("/dev/zero: a character device, not a regular file")
    assert said["tar member"]["read"] == (
        f"{sys.executable}:x.jpg: member of "
        "1,099,511,627,776 bytes; image files above 536,870,912 bytes are "
        "refused before reading"
    )


def test_mheads_shard_refuses_a_fifo_with_exit_2_and_one_line(tmp_path):
    fifo = _folder(tmp_path / "set")
    os.mkfifo(fifo)
    done = mheads_capped("shard", tmp_path / "set", tmp_path / "out", timeout=90)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr == (
        f"mheads: error: {fifo}: a FIFO (named pipe), not a regular file; a data folder "
        "may hold only regular files and folders (remove it)\n"
    )


def _bytes_path(path, name: bytes) -> bytes:
    return os.fsencode(path) + b"/" + name


def test_a_non_utf8_file_name_is_refused_naming_it_escaped(tmp_path, capsys):
    root = tmp_path / "set"
    _folder(root)
    fd = os.open(_bytes_path(root / "train" / "a", b"\xff.png"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, PNG)
    os.close(fd)
    shown = rf"{root}/train/a/\\xff\.png: file name is not valid UTF-8; rename it to UTF-8"
    with pytest.raises(DataError, match=shown):
        index_source(root)
    with pytest.raises(DataError, match=shown):
        load_dataset(root, cache=False)
    done = mheads_capped("shard", root, tmp_path / "out", timeout=90)  # was a UnicodeEncodeError traceback
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-2000:]
    assert f"{root}/train/a/\\xff.png: file name is not valid UTF-8" in done.stderr


def test_a_non_utf8_class_folder_is_refused(tmp_path):
    root = tmp_path / "set"
    _folder(root)
    os.mkdir(_bytes_path(root / "train", b"caf\xe9"))
    os.mkdir(_bytes_path(root / "test", b"caf\xe9"))
    for reader in (index_source, lambda r: load_dataset(r, cache=False)):
        with pytest.raises(DataError, match=r"train/caf\\xe9: file name is not valid UTF-8"):
            reader(root)


def test_links_out_of_the_data_folder_are_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "0.png").write_bytes(PNG)
    folder_link = tmp_path / "folder-link"
    _folder(folder_link)
    (folder_link / "train" / "b").symlink_to(outside)  # a class folder that is a link out
    (folder_link / "test" / "b").mkdir()
    file_link = tmp_path / "file-link"
    _folder(file_link, "1.png").symlink_to(outside / "0.png")
    for root, link in ((folder_link, folder_link / "train" / "b"), (file_link, file_link / "train/a/1.png")):
        for reader in (index_source, lambda r: load_dataset(r, cache=False)):
            refused = rf"^{link}: .*{outside}(/0\.png)?, outside the data folder {root}; "
            with pytest.raises(DataError, match=refused):
                reader(root)


def test_links_inside_the_folder_are_followed_alike_by_both_loaders_and_loops_refused(tmp_path):
    store = tmp_path / "store"  # the data folder is itself a link: fine
    _folder(store)
    (store / "pool").mkdir()
    for k in range(3):
        (store / "pool" / f"{k}.png").write_bytes(image_bytes(np.full((1, 4, 4), 10 * k, np.uint8), "PNG"))
    (store / "train" / "b").symlink_to(store / "pool")
    (store / "test" / "b").mkdir()
    (store / "test" / "b" / "0.png").symlink_to("../../pool/0.png")
    root = tmp_path / "root-link"
    root.symlink_to(store)
    ds, index = load_dataset(root, cache=False), index_source(root)
    assert ds.classes == index.classes == ["a", "b"]
    assert [index.train.name(i) for i in range(len(index.train))] == [
        "train/a/0.png",
        "train/b/0.png",
        "train/b/1.png",
        "train/b/2.png",
    ]
    np.testing.assert_array_equal(ds.train.labels, index.train.labels)
    np.testing.assert_array_equal(ds.train.images[1:, 0, 0, 0], [0, 10, 20])
    (store / "pool" / "again").symlink_to("..")  # pool/again/pool/again/...: a loop
    for reader in (index_source, lambda r: load_dataset(r, cache=False)):
        with pytest.raises(DataError, match=r"again: symbolic link loop \(it leads back to "):
            reader(root)


def test_a_fifo_named_classes_txt_is_refused_not_skipped(tmp_path):
    """A FIFO where classes.txt belongs (image folder or shards) is named in a one-line error, not opened
    blocking and not silently ignored (the class order would then come from the folder names)."""
    from PIL import Image

    root = tmp_path / "set"
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
        Image.new("L", (8, 8), 3).save(root / split / "a" / "x.png")
    os.mkfifo(root / "classes.txt")
    code = (
        "import sys\nfrom mheads.data.index import index_source\nfrom mheads.data import DataError\n"
        f"try:\n    index_source({str(root)!r})\nexcept DataError as e:\n    print('refused', e)\n"
    )
    r = run_capped(["-c", code], timeout=60)  # a child: a FIFO opened blocking would never return
    assert r.stdout.startswith("refused") and "classes.txt" in r.stdout and "FIFO" in r.stdout.upper(), r
