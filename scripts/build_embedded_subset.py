#!/usr/bin/env python
"""Build src/mheads/data/embedded/fashion_mnist_subset.npz from the full Fashion-MNIST idx files.

    python scripts/build_embedded_subset.py [FASHION_MNIST_DIR] [--out FILE] [--seed N]

Reads the four idx files with mheads' own idx reader, keeps a deterministic class-balanced subset
(1,000 training and 200 test images per class, chosen by a hash of the seed and the index, so the
result is the same under any numpy or torch version) and writes it as compressed npz.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a checkout without installing

from mheads.data.embedded import (  # noqa: E402
    EMBEDDED_FILE,
    SUBSET_SEED,
    TEST_PER_CLASS,
    TRAIN_PER_CLASS,
    build_subset,
    save_subset,
)
from mheads.data.load import load_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "source",
        nargs="?",
        default="/work/shared/data/fashion-mnist",
        help="folder (or archive) with the Fashion-MNIST idx files",
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "src" / "mheads" / "data" / "embedded" / EMBEDDED_FILE
    )
    parser.add_argument("--seed", type=int, default=SUBSET_SEED)
    parser.add_argument("--train-per-class", type=int, default=TRAIN_PER_CLASS)
    parser.add_argument("--test-per-class", type=int, default=TEST_PER_CLASS)
    args = parser.parse_args(argv)

    full = load_dataset(args.source, cache=False)
    subset, train_index, test_index = build_subset(full, args.train_per_class, args.test_per_class, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as handle:
        save_subset(handle, subset, train_index, test_index, args.seed)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(
        f"wrote {args.out}: {len(subset.train)} train + {len(subset.test)} test images "
        f"{subset.image_shape}, {args.out.stat().st_size / 1e6:.2f} MB, sha256 {digest}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
