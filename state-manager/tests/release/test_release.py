"""`make release`, for real: every artifact with its SBOMs and checksum, and the wheels working on their own.

One release is built (scripts/release.py into a temporary folder) and installed into a fresh virtual
environment outside the project tree, as a user would from a release page. pip and npm take the
dependencies from their caches when they can (the first run on a machine downloads them): a few minutes
of wall time on a loaded machine, most of it building the sdists and resolving.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import venv
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from exosphere_server import __version__ as SERVER_VERSION
from exosphere_testing import free_port, wait_until
from exospherehost._version import VERSION

REPO = Path(__file__).resolve().parents[3]
SLOW = pytest.mark.timeout(1800)  # building and installing a release, on a machine shared with others
ARTIFACTS = [
    f"exospherehost-{VERSION}-py3-none-any.whl",
    f"exospherehost-{VERSION}.tar.gz",
    f"exosphere_server-{SERVER_VERSION}-py3-none-any.whl",
    f"exosphere_server-{SERVER_VERSION}.tar.gz",
    f"exospherehost-{VERSION}.tgz",
]
CYCLONEDX_XML = "{http://cyclonedx.org/schema/bom/1.6}"


def run(*command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("release") / "dist"
    run(sys.executable, REPO / "scripts" / "release.py", "--out", out)
    return out


@dataclass
class Installed:
    bin: Path
    outside: Path  # a folder with nothing of the project in it, the working directory of every command
    env: dict[str, str]


@pytest.fixture(scope="module")
def installed(release: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The two wheels of the release in a fresh venv (no pip in it: this process's pip installs there)."""
    root = tmp_path_factory.mktemp("user")
    venv.create(root / "venv", with_pip=False)
    bin_dir = root / "venv" / "bin"
    wheels = sorted(release.glob("*.whl"))
    # Nothing of the project tree may leak in: no PYTHONPATH, no active venv, run from elsewhere.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("STATE_MANAGER_SECRET", None)
    env["EXOSPHERE_DATA_DIR"] = str(root / "data")
    run(sys.executable, "-m", "pip", "--python", bin_dir / "python", "install", "-q", *wheels, cwd=root, env=env)
    return Installed(bin_dir, root, env)


@SLOW
def test_a_release_holds_each_artifact_with_its_sboms_and_checksums(release: Path) -> None:
    expected = {*ARTIFACTS, *(f"{a}.cdx.{f}" for a in ARTIFACTS for f in ("json", "xml")), "SHA256SUMS"}
    assert {p.name for p in release.iterdir()} == expected
    sums = dict(reversed(line.split("  ")) for line in (release / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == expected - {"SHA256SUMS"}
    for name, digest in sums.items():
        assert hashlib.sha256((release / name).read_bytes()).hexdigest() == digest, name
    for artifact in ARTIFACTS:
        document = json.loads((release / f"{artifact}.cdx.json").read_text())
        assert document["bomFormat"] == "CycloneDX"
        components = document["components"]
        for component in components:  # each with a version, a licence and the hash of what was installed
            assert component["version"] and component["licenses"], component
            assert _hashes(component), component
        xml_names = {
            c.findtext(f"{ns}name")
            for ns in (CYCLONEDX_XML, CYCLONEDX_XML.replace("1.6", "1.5"))
            for c in ElementTree.parse(release / f"{artifact}.cdx.xml").getroot().iter(f"{ns}component")
        }
        assert {c["name"] for c in components} <= xml_names, artifact
    npm = json.loads((release / f"exospherehost-{VERSION}.tgz.cdx.json").read_text())
    assert {c["name"] for c in npm["components"]} == {"exospherehost", "zod"}  # the SDK and its peer
    with tarfile.open(release / f"exospherehost-{VERSION}.tgz") as tarball:
        assert "package/LICENSE" in tarball.getnames()


@SLOW
def test_the_wheels_alone_run_the_demo_graph_and_print_their_versions(installed: Installed, tmp_path: Path) -> None:
    versions = run(installed.bin / "exosphere", "--version", cwd=installed.outside, env=installed.env)
    assert versions == f"exospherehost {VERSION}\nexosphere-server {SERVER_VERSION}\n"
    where = run(installed.bin / "python", "-c", "import exosphere_server; print(exosphere_server.__file__)",
                cwd=installed.outside, env=installed.env)  # fmt: skip
    assert where.startswith(str(installed.outside)), where  # the installed copy, not the checkout

    shutil.copy(REPO / "examples" / "daily_digest.py", installed.outside / "daily_digest.py")
    with _server(installed, tmp_path) as url:
        output = run(installed.bin / "python", "daily_digest.py", url, "release-key",
                     cwd=installed.outside, env=installed.env)  # fmt: skip
    assert re.search(r"run \S+: SUCCESS in \d+ ms, 10 states", output), output


@SLOW
def test_every_installed_runtime_dependency_is_in_the_server_sbom(installed: Installed, release: Path) -> None:
    listing = run(
        installed.bin / "python",
        "-c",
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
        cwd=installed.outside,
        env=installed.env,
    )
    present = {_normal(name): version for name, version in json.loads(listing).items()}
    document = json.loads((release / f"exosphere_server-{SERVER_VERSION}-py3-none-any.whl.cdx.json").read_text())
    described = {_normal(c["name"]): c["version"] for c in document["components"]}
    root = document["metadata"]["component"]
    described[_normal(root["name"])] = root["version"]
    assert present == described


def _hashes(component: dict[str, object]) -> list[object]:
    references = component.get("externalReferences") or []
    assert isinstance(references, list)
    return list(component.get("hashes") or []) + [h for r in references for h in r.get("hashes", [])]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@contextlib.contextmanager
def _server(installed: Installed, tmp_path: Path) -> Iterator[str]:
    """`exosphere server` of the installed release on a free port and its own SQLite file; its URL."""
    port, log = free_port(), tmp_path / "server.log"
    command = [
        installed.bin / "exosphere", "server", "--port", str(port), "--api-key", "release-key",
        "--database-url", f"sqlite:///{tmp_path / 'release.db'}",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as output:
        process = subprocess.Popen(command, cwd=installed.outside, env=installed.env, stdout=output, stderr=output)
        try:
            wait_until(lambda: _healthy(url) or process.poll() is not None, what="the released server to start")
            assert process.poll() is None, log.read_text()
            yield url
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    assert "Traceback" not in log.read_text(), log.read_text()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
