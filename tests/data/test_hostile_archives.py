"""Archives and label files someone hands over: tar files cut or corrupted anywhere, decompression bombs,
headers declaring gigabytes, stray and non-integer shard labels. Every tar reader (the resident loader's
archives, the streaming index of a plain .tar and of WebDataset shards) refuses them with one line naming the
file, before anything is sized by them: the cases that could allocate run in a child process under an
address-space cap (tests/memcap.py), so a regression fails the test instead of the machine."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import tarfile

import numpy as np
import pytest
from data_writers import balanced_labels, idx_bytes, image_bytes, random_images, write_image_folder

from memcap import run_capped
from mheads.cli.commands import main
from mheads.data import DataError, load_dataset
from mheads.data.index import index_source
from mheads.data.shards import write_shards

PNG = image_bytes(np.zeros((1, 4, 4), np.uint8), "PNG")
CHUNK = 64 << 20  # zero bytes per gzip member of a bomb


def _folder(root):
    train = (random_images(8, 3, 8, 8, seed=1), balanced_labels(8, 2))
    test = (random_images(4, 3, 8, 8, seed=2), balanced_labels(4, 2))
    write_image_folder(root, {"train": train, "test": test}, ["a", "b"], fmt="PNG")
    return root


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _shards(root, train_labels: list[bytes], test_labels: list[bytes] = (b"0",), classes: str | None = None):
    """A shard folder: one train and one test shard, sample k a PNG and a .cls holding the given bytes."""
    root.mkdir(parents=True)
    for split, labels in (("train", train_labels), ("test", test_labels)):
        with tarfile.open(root / f"{split}-000000.tar", "w", format=tarfile.GNU_FORMAT) as tar:
            for k, label in enumerate(labels):
                _add(tar, f"{k:04d}.png", PNG)
                _add(tar, f"{k:04d}.cls", label)
    if classes is not None:
        (root / "classes.txt").write_text(classes)
    return root


def _member_ends(path) -> list[int]:
    """Byte offsets inside ``path`` worth cutting at: each header's start, middle and end, each member's data
    middle, and the start and middle of the end-of-archive block."""
    with tarfile.open(path) as tar:
        infos = tar.getmembers()
        end = tar.offset
    cuts = {end, end + 256}
    for info in infos:
        cuts |= {info.offset, info.offset + 100, info.offset_data, info.offset_data + max(info.size // 2, 1)}
    return sorted(c for c in cuts if 0 < c)


def _refused(fn) -> str:
    with pytest.raises(DataError) as err:
        fn()
    return str(err.value)


def test_every_tar_reader_refuses_an_archive_cut_anywhere(tmp_path):
    root = _folder(tmp_path / "set")
    plain = tmp_path / "set.tar"
    with tarfile.open(plain, "w") as tar:
        for split in ("train", "test"):
            tar.add(root / split, arcname=split)
    shards = tmp_path / "shards"
    write_shards(root, shards, per_shard=100)
    shard = shards / "train-000000.tar"
    full_plain, full_shard = plain.read_bytes(), shard.read_bytes()
    assert len(index_source(shards).train) == 8 and len(index_source(plain).train) == 8  # whole: fine
    assert len(load_dataset(plain, cache=False).train) == 8
    cut_plain, cut_shard = _member_ends(plain), _member_ends(shard)
    assert len(cut_plain) > 40 and len(cut_shard) > 40
    for cut in cut_shard:  # mid-header, at a header boundary, mid-member, inside the end block
        shard.write_bytes(full_shard[:cut])
        assert str(shard) in _refused(lambda: index_source(shards)), cut
    for cut in cut_plain:
        plain.write_bytes(full_plain[:cut])
        assert str(plain) in _refused(lambda: index_source(plain)), cut
        assert str(plain) in _refused(lambda: load_dataset(plain, cache=False)), cut
    # A header overwritten mid-archive (the third sample's image): tarfile alone stops listing there silently.
    broken = bytearray(full_shard)
    broken[4096 : 4096 + 512] = b"\x07" * 512
    shard.write_bytes(bytes(broken))
    assert _refused(lambda: index_source(shards)).startswith(
        f"{shard}: has an unreadable header at byte 4096, after 4 member(s)"
    )


@pytest.mark.parametrize(
    "suffix, compress", [(".tar.gz", gzip.compress), (".tar.bz2", bz2.compress), (".tar.xz", lzma.compress)]
)
def test_compressed_archives_cut_or_ending_early_are_refused(tmp_path, suffix, compress):
    root = _folder(tmp_path / "set")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar.add(root, arcname="set")
    data = raw.getvalue()
    whole = tmp_path / f"whole{suffix}"
    whole.write_bytes(compress(data))
    assert len(load_dataset(whole, cache=False).train) == 8
    packed = compress(data)
    for name, content in (
        ("cut", packed[: len(packed) // 2]),
        ("cut-late", packed[:-8]),
        # a complete stream of a tar cut at a header boundary: no end-of-archive block
        ("early", compress(data[: 3 * 512])),
    ):
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(content)
        message = _refused(lambda p=path: load_dataset(p, cache=False))
        assert message.startswith(f"{path}") and ("truncated" in message or "corrupt" in message), message
    # Two archives concatenated: tarfile lists the first only, silently.
    (tmp_path / f"two{suffix}").write_bytes(compress(data) + compress(data))
    assert _refused(lambda: load_dataset(tmp_path / f"two{suffix}", cache=False)).startswith(
        f"{tmp_path / f'two{suffix}'}: more data after the end-of-archive block at byte "
    )


def _gzip_zeros(count: int) -> bytes:
    """``count`` * 64 MiB of zeros gzipped without making them: one compressed chunk repeated (concatenated
    gzip members read as one stream)."""
    return gzip.compress(bytes(CHUNK), 9) * count


def _bomb(path, member: str, size: int) -> None:
    """A .tar.gz whose one member ``member`` holds ``size`` zero bytes (a few MB on disk)."""
    info = tarfile.TarInfo(member)
    info.size = size
    with open(path, "wb") as f:
        f.write(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
        f.write(_gzip_zeros(size // CHUNK))
        f.write(gzip.compress(bytes(2 * 512)))  # the end-of-archive blocks


def _idx_bomb(path, head: bytes, size: int) -> None:
    """A plain tar of the four MNIST files whose train-images-idx3-ubyte.gz is the idx header ``head`` then
    zeros, ``size`` bytes once inflated (a few MB on disk)."""
    labels = idx_bytes(np.zeros(4, np.uint8))
    with tarfile.open(path, "w") as tar:
        _add(tar, "train-images-idx3-ubyte.gz", gzip.compress(head) + _gzip_zeros(size // CHUNK))
        _add(tar, "train-labels-idx1-ubyte", labels)
        _add(tar, "t10k-images-idx3-ubyte", idx_bytes(np.zeros((4, 28, 28), np.uint8)))
        _add(tar, "t10k-labels-idx1-ubyte", labels)


def _header_bomb(path, kind: str, size: int) -> None:
    """A sparse tar of ``size`` bytes whose first header is a pax header (``kind`` "pax") or a GNU long name
    ("longname") declaring ``size`` bytes: tarfile alone reads such a header whole."""
    info = tarfile.TarInfo("././@LongLink" if kind == "longname" else "pax")
    info.type, info.size = (tarfile.GNUTYPE_LONGNAME if kind == "longname" else tarfile.XHDTYPE), size
    header = info.tobuf(format=tarfile.GNU_FORMAT if kind == "longname" else tarfile.USTAR_FORMAT)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + size + 1024)


GIB = 2**30

# Each call in one child under the address-space cap: the DataError message it raised (or what else happened).
CALLS = r"""
import json, sys
from mheads.data import DataError, load_dataset
from mheads.data.index import index_source

out = {}
for call in json.loads(sys.argv[1]):
    try:
        out[call] = "no error: " + repr(eval(call))
    except DataError as err:
        out[call] = str(err)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Every archive or label file of hostile size, each read by every reader that takes it, in one child
    under the memory cap (one start-up for all): ``(folder, {call: what it said})``."""
    d = tmp_path_factory.mktemp("hostile")
    # Members of 3 GiB (above what the cap leaves) and 5 GiB (above MAX_READ_BYTES on any machine).
    _bomb(d / "three.tar.gz", "train-images-idx3-ubyte", 3 * GIB)
    _bomb(d / "five.tar.gz", "train-images-idx3-ubyte", 5 * GIB)
    assert os.path.getsize(d / "five.tar.gz") < 8 << 20
    # An idx.gz whose header declares 4 images of 28x28 but that inflates to 3 GiB, and one declaring 5 GB.
    _idx_bomb(d / "lying.tar", idx_bytes(np.zeros((4, 28, 28), np.uint8))[:16], 3 * GIB)
    declares_5gb = bytes([0, 0, 8, 3]) + (5000).to_bytes(4, "big") + (1000).to_bytes(4, "big") * 2
    _idx_bomb(d / "declared.tar", declares_5gb, 3 * GIB)
    # A folder of MNIST files whose train images are a sparse 12 GiB file (read whole before: not an image,
    # so no image-size bound applied).
    labels = idx_bytes(np.zeros(4, np.uint8))
    (d / "sparse-idx").mkdir()
    with open(d / "sparse-idx" / "train-images-idx3-ubyte", "wb") as f:
        f.truncate(12 * GIB)
    for name, data in (
        ("train-labels-idx1-ubyte", labels),
        ("t10k-labels-idx1-ubyte", labels),
        ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((4, 28, 28), np.uint8))),
    ):
        (d / "sparse-idx" / name).write_bytes(data)
    calls = [
        f"load_dataset({str(d / n)!r}, cache=False)"
        for n in ("three.tar.gz", "five.tar.gz", "lying.tar", "declared.tar", "sparse-idx")
    ]
    for kind in ("pax", "longname"):
        _header_bomb(d / kind / "set.tar", kind, 5 * GIB)
        _header_bomb(d / kind / "shards" / "train-000000.tar", kind, 5 * GIB)
        _shards(d / kind / "ok", [b"0"])  # a complete test shard beside the bomb
        os.replace(d / kind / "ok" / "test-000000.tar", d / kind / "shards" / "test-000000.tar")
        calls += [
            f"load_dataset({str(d / kind / 'set.tar')!r}, cache=False)",
            f"index_source({str(d / kind / 'set.tar')!r})",
            f"index_source({str(d / kind / 'shards')!r})",
        ]
    # A shard label of 2**40 would have built a list of 2**40 class names; one of 19 digits too.
    _shards(d / "huge-label", [b"0", b"1", b"2", b"3"] * 3 + [str(2**40).encode()], [b"2"])
    _shards(d / "19-digits", [b"0", b"1", b"1" * 19], [b"1"])
    calls += [f"index_source({str(d / 'huge-label')!r})", f"index_source({str(d / '19-digits')!r})"]
    done = run_capped(["-c", CALLS, json.dumps(calls)], timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return d, json.loads(done.stdout)


def _said(hostile, call: str) -> str:
    d, said = hostile
    return said[call.replace("D", str(d))]


def test_decompression_bombs_are_refused_before_they_are_inflated(hostile):
    d, _ = hostile
    for name in ("three.tar.gz", "five.tar.gz"):
        message = _said(hostile, f"load_dataset('D/{name}', cache=False)")
        assert message.startswith(f"{d / name}:train-images-idx3-ubyte: member holds "), message
        assert "above the limit of" in message and "for one file read whole" in message
    assert _said(hostile, "load_dataset('D/lying.tar', cache=False)").startswith(
        f"{d / 'lying.tar'}:train-images-idx3-ubyte.gz: idx file has trailing bytes: 3153 bytes, expected "
        "3152 for shape (4, 28, 28)"
    )
    assert _said(hostile, "load_dataset('D/declared.tar', cache=False)").startswith(
        f"{d / 'declared.tar'}:train-images-idx3-ubyte.gz: idx header: declares 5000000016 bytes"
    )
    assert _said(hostile, "load_dataset('D/sparse-idx', cache=False)").startswith(
        f"{d / 'sparse-idx' / 'train-images-idx3-ubyte'}: file is 12,884,901,888 bytes; files above "
    )


@pytest.mark.parametrize("kind", ["pax", "longname"])
def test_huge_pax_and_long_name_headers_are_refused_by_every_tar_reader(hostile, kind):
    """A pax header or a GNU long name declaring 5 GiB, in sparse files of 5 GiB, read by the resident loader,
    the plain-tar index and the shard index."""
    d, _ = hostile
    for call, path in (
        (f"load_dataset('D/{kind}/set.tar', cache=False)", d / kind / "set.tar"),
        (f"index_source('D/{kind}/set.tar')", d / kind / "set.tar"),
        (f"index_source('D/{kind}/shards')", d / kind / "shards" / "train-000000.tar"),
    ):
        message = _said(hostile, call)
        assert message.startswith(f"{path}: header or member at byte 512: asks to read 5368709120 "), message


def test_archive_listing_more_members_than_memory_allows_is_refused(tmp_path, monkeypatch):
    # Every listed member costs memory (about ENTRY_BYTES): a few megabytes of compressed headers can list
    # millions. Here the read limit is made small instead of the archive large.
    monkeypatch.setattr("mheads.data.tars.read_limit", lambda: 64 * 1024)
    root = tmp_path / "many"
    for k in range(70):
        (root / "train" / "a").mkdir(parents=True, exist_ok=True)
        (root / "train" / "a" / f"{k}.png").write_bytes(PNG)
    (root / "test" / "a").mkdir(parents=True)
    (root / "test" / "a" / "0.png").write_bytes(PNG)
    with tarfile.open(tmp_path / "many.tar.gz", "w:gz") as tar:
        tar.add(root, arcname="many")
    message = _refused(lambda: load_dataset(tmp_path / "many.tar.gz", cache=False))
    assert message.startswith(f"{tmp_path / 'many.tar.gz'}: lists more than 64 members (about 1024 bytes")


def test_a_stray_shard_label_never_sizes_the_model(tmp_path, hostile):
    labels = [b"0", b"1", b"2", b"3"] * 3
    assert index_source(_shards(tmp_path / "dense", labels, [b"1"])).classes == ["0", "1", "2", "3"]
    stray = _shards(tmp_path / "stray", labels + [b"200000"], [b"2"])
    message = _refused(lambda: index_source(stray))
    assert message.startswith(
        f"{stray / 'train-000000.tar'}:0012.cls: labels run up to 200000 but 199996 of "
        "0..200000 never occur (e.g. 4); label 200000 has 1 example(s): a stray label?"
    )
    assert "classes.txt" in message
    # A label of 2**40 would have built a list of 2**40 class names: refused in bounded memory.
    huge = hostile[0] / "huge-label" / "train-000000.tar"
    assert _said(hostile, "index_source('D/huge-label')").startswith(
        f"{huge}:0012.cls: labels run up to {2**40} but 1099511627772 of 0.."
    )
    # With a classes.txt every label must be below its count, and the message names the label's file.
    named = _shards(tmp_path / "named", labels + [b"7"], [b"2"], classes="a\nb\nc\nd\n")
    assert _refused(lambda: index_source(named)).startswith(
        f"{named / 'train-000000.tar'}:0012.cls: label 7 is outside the 4 classes of "
        f"{named / 'classes.txt'}; expected a class index 0..3"
    )
    too_long = hostile[0] / "19-digits" / "train-000000.tar"
    assert _said(hostile, "index_source('D/19-digits')").startswith(
        f"{too_long}:0002.cls: label b'1111111111111111111' is not a class index; expected a non-negative "
        "decimal integer (at most 18 digits)"
    )
    sparse = _shards(tmp_path / "sparse", [b"0", b"5", b"9"], [b"5"], classes="\n".join("abcdefghij") + "\n")
    assert len(index_source(sparse).classes) == 10  # with classes.txt, absent classes are fine


@pytest.mark.parametrize("text", [b"2.7", b"-1", b"+3", b"1_000", b"0x10", b"3e2", b"\xd9\xa3", b"", b"nan"])
def test_shard_labels_that_are_not_plain_class_indices_are_refused(tmp_path, text):
    # Only labels that cannot size anything huge here: a regression would read them in this process.
    shards = _shards(tmp_path / "s", [b"0", b"1", text], [b"1"])
    assert _refused(lambda: index_source(shards)).startswith(
        f"{shards / 'train-000000.tar'}:0002.cls: label {text[:20]!r} is not a class index; expected a "
        "non-negative decimal integer"
    )


def test_shard_labels_with_spaces_are_read_and_long_label_files_refused(tmp_path):
    index = index_source(_shards(tmp_path / "s", [b" 0\n", b"1\r\n", b"\t2 "], [b"1"]))
    assert index.train.labels.tolist() == [0, 1, 2]
    longer = _shards(tmp_path / "longer", [b"0", b"1", b" " * 100 + b"1"], [b"1"])
    assert _refused(lambda: index_source(longer)) == (
        f"{longer / 'train-000000.tar'}:0002.cls: label file of 101 bytes; expected a class index as decimal "
        "text (at most 64 bytes)"
    )


def test_shard_to_an_existing_file_or_an_unwritable_place_is_one_line_with_exit_2(tmp_path, capsys):
    root = _folder(tmp_path / "set")
    (tmp_path / "taken").write_text("mine")
    assert main(["shard", str(root), str(tmp_path / "taken")]) == 2  # was a FileExistsError traceback
    assert capsys.readouterr().err.strip().splitlines() == [
        f"mheads: error: {tmp_path / 'taken'}: exists and is not a folder; expected the path of a new or "
        "empty folder to write the shards into"
    ]
    assert (tmp_path / "taken").read_text() == "mine"
    assert main(["shard", str(root), str(tmp_path / "taken" / "below")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"mheads: error: {tmp_path / 'taken' / 'below'}: cannot create the folder ([Errno 20] Not a "
        "directory); expected a writable path for a new folder"
    ]
    assert main(["shard", str(root), str(tmp_path / "out")]) == 0
    assert len(index_source(tmp_path / "out").train) == 8
