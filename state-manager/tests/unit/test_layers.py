"""The layer rule of state-manager/ARCHITECTURE.md holds (the same check `make lint` runs)."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_imports_point_down_the_layers_only() -> None:
    # Exit code 0 means every contract is kept; a broken one prints the offending import chain.
    assert lint_imports(config_filename=str(PYPROJECT), no_cache=True) == 0
