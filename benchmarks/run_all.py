"""Run every benchmark in this folder (on demand: `make bench`), one after another, printing each report.

Benchmarks are never part of `make test`; their figures are ratios measured side by side in one run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("bench_train.py", "bench_probe.py")


def main() -> int:
    status = 0
    for name in BENCHMARKS:
        print(f"=== {name} ===", flush=True)
        status |= subprocess.call([sys.executable, str(HERE / name), *sys.argv[1:]])
    return status


if __name__ == "__main__":
    sys.exit(main())
