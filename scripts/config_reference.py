"""Write the config reference block of docs/configs.md from the docstrings of mheads.config's dataclasses.

Run from the repository root: ``python scripts/config_reference.py`` rewrites the block in place;
``--check`` writes nothing and exits 1 when the committed block differs from the generated one.
The generation is :func:`mheads.config.reference.with_reference`; tests/config/test_reference.py checks the
same equality in the default test run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mheads.config.reference import with_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "configs.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the block is out of date")
    args = parser.parse_args(argv)
    text = DOC.read_text(encoding="utf-8")
    try:
        new = with_reference(text)
    except ValueError as err:
        print(f"{DOC}: {err}", file=sys.stderr)
        return 1
    if args.check:
        if new != text:
            print(
                f"{DOC}: the config reference is out of date; run python scripts/config_reference.py",
                file=sys.stderr,
            )
            return 1
        return 0
    if new != text:
        DOC.write_text(new, encoding="utf-8")
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
