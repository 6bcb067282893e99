import sys
from pathlib import Path

# The benchmark helpers (benchmarks/*.py) are scripts, not a package: their tests import them by file name.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
