import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The analysis helpers (scripts/*.py) are scripts, not a package: their tests import them by file name.
sys.path.insert(0, str(REPO / "scripts"))
