"""What a release promises before it is built: one version, the SDK pinned, the MIT licence everywhere."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from exosphere_server import __version__ as SERVER_VERSION
from exospherehost._version import VERSION

REPO = Path(__file__).resolve().parents[3]


def _pyproject(project: str) -> dict[str, object]:
    return dict(tomllib.loads((REPO / project / "pyproject.toml").read_text())["project"])


def test_the_server_requires_exactly_the_sdk_it_is_built_with() -> None:
    dependencies = _pyproject("state-manager")["dependencies"]
    assert isinstance(dependencies, list)
    [sdk] = [d for d in dependencies if d.startswith("exospherehost")]
    assert sdk == f"exospherehost[cli]=={VERSION}"


def test_every_package_carries_one_version_and_the_mit_licence() -> None:
    package = json.loads((REPO / "typescript-sdk" / "package.json").read_text())
    assert VERSION == SERVER_VERSION == package["version"]
    assert package["license"] == "MIT"
    for project in ("python-sdk", "state-manager"):
        metadata = _pyproject(project)
        assert metadata["license"] == "MIT" and metadata["license-files"] == ["LICENSE"], project
    licence = (REPO / "LICENSE").read_text()
    assert licence.startswith("MIT License")
    for project in ("python-sdk", "state-manager", "typescript-sdk"):  # each package ships its own copy
        assert (REPO / project / "LICENSE").read_text() == licence, project
