"""`make bench`: every benchmark, one after the other, each printing its own figures.

    .venv/bin/python bench/run.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = ["server_bench.py", "sdk_bench.py", "dashboard_bench.py", "graph_validation_bench.py"]


def main() -> None:
    failed = []
    for name in BENCHMARKS:
        print(f"\n== {name}", flush=True)
        if subprocess.run([sys.executable, str(HERE / name)], check=False).returncode != 0:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
