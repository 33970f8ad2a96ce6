"""The layer rule of state-manager/ARCHITECTURE.md holds (the same check `make lint` runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_imports_point_down_the_layers_only() -> None:
    # In its own process: import-linter reconfigures logging (dictConfig), which would disable the
    # loggers of every test that runs after it in this one.
    done = subprocess.run(
        [str(LINT_IMPORTS), "--config", str(PYPROJECT), "--no-cache"], capture_output=True, text=True, check=False
    )
    # Exit code 0 means every contract is kept; a broken one prints the offending import chain.
    assert done.returncode == 0, done.stdout + done.stderr
