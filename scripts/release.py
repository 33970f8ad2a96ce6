"""`make release`: build every artifact into dist/, with a CycloneDX SBOM (JSON and XML) each and SHA256SUMS.

    python scripts/release.py [--out dist]

What lands in the output folder:

* `exospherehost-X-py3-none-any.whl`, `exospherehost-X.tar.gz` (the Python SDK), `exosphere_server-X-…whl`,
  `exosphere_server-X.tar.gz` (the state manager) and `exospherehost-X.tgz` (the TypeScript SDK, `npm pack`);
* `<artifact>.cdx.json` and `<artifact>.cdx.xml` beside each: what installing that artifact brings, every
  runtime dependency with its version, licence and the SHA-256 (Python) or SHA-512 (npm) of the file
  installed. The Python ones are made by cyclonedx-py from a fresh environment where only that artifact and
  its dependencies are installed (the SDK with its `cli` extra, which the `exosphere` command needs); the npm
  one by `npm sbom` from a fresh project that installs the tarball (its peer dependency zod included),
  written as XML too by cyclonedx-python-lib, the library under cyclonedx-py;
* `SHA256SUMS` over all of the above (`sha256sum -c SHA256SUMS` checks them).

The dependency versions are those pip and npm resolve on the build machine, for its Python version and
platform (uvloop, httptools, pydantic-core, … ship compiled wheels): build on the platform you deploy on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON_PACKAGES = {"python-sdk": "exospherehost[cli]", "state-manager": "exosphere-server"}
CYCLONEDX_SPEC = "1.6"
# A build that prints one of these has metadata to fix (the licence warnings of issue 14).
BUILD_WARNINGS = ("SetuptoolsDeprecationWarning", "SetuptoolsWarning", "_DeprecatedConfig")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output folder, emptied first")
    out: Path = parser.parse_args().out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="exosphere-release-") as scratch:
        work = Path(scratch)
        build_python_packages(out)
        for requirement in PYTHON_PACKAGES.values():
            for artifact in sorted(out.glob(f"{distribution_file_prefix(requirement)}-*")):
                python_sbom(artifact, requirement, work / artifact.name, out)
        tarball = pack_typescript_sdk(out)
        npm_sbom(tarball, work / "npm", out)
    write_checksums(out)
    print(f"release artifacts in {out}:")
    for path in sorted(out.iterdir()):
        print(f"  {path.name}")


# -- Python ---------------------------------------------------------------------------------------


def build_python_packages(out: Path) -> None:
    for project in PYTHON_PACKAGES:
        output = run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO / project)])
        found = [warning for warning in BUILD_WARNINGS if warning in output]
        if found:
            raise SystemExit(f"building {project} warned ({', '.join(found)}): fix its pyproject.toml\n{output}")


def distribution_file_prefix(requirement: str) -> str:
    """`exosphere-server` → `exosphere_server`, as wheel and sdist file names spell it."""
    return requirement.partition("[")[0].replace("-", "_")


def python_sbom(artifact: Path, requirement: str, work: Path, out: Path) -> None:
    """Install `artifact` and its dependencies into an empty environment, and describe that environment."""
    environment = work / "venv"
    venv.EnvBuilder(with_pip=False).create(environment)  # no pip nor setuptools: nothing the artifact did not bring
    python = str(environment / "bin" / "python")
    # An sdist has its wheel's dependencies: resolve with the wheel, install the sdist in its place.
    [wheel] = out.glob(f"{distribution_file_prefix(requirement)}-*.whl")
    files = [str(artifact) if f == wheel.as_uri() else f for f in resolve_files(wheel, requirement, out, work)]
    # Each file or URL named on the command line is a direct install, so pip records where it came from
    # and its SHA-256 in direct_url.json (PEP 610), which cyclonedx-py writes into the SBOM.
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", *files])
    pyproject = write_root_pyproject(artifact, work / "pyproject.toml")
    for fmt in ("JSON", "XML"):
        target = out / f"{artifact.name}.cdx.{fmt.lower()}"
        run(
            [
                sys.executable,
                "-m",
                "cyclonedx_py",
                "environment",
                "--pyproject",
                str(pyproject),
                "--sv",
                CYCLONEDX_SPEC,
                "--of",
                fmt,
                "-o",
                str(target),
                python,
            ]
        )


def resolve_files(wheel: Path, requirement: str, out: Path, work: Path) -> list[str]:
    """The URLs of the files pip would install for `wheel` (with the extras of `requirement`): the index's for
    dependencies (pip's cache spares the downloads), `out`'s for our own wheels."""
    report = work / "report.json"
    extras = requirement.partition("[")[2].rstrip("]")
    target = f"{distribution_file_prefix(requirement)}[{extras}] @ {wheel.as_uri()}" if extras else str(wheel)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--dry-run",
            "--ignore-installed",
            "--find-links",
            str(out),  # the server's SDK is the one just built
            "--report",
            str(report),
            target,
        ]
    )
    installs = json.loads(report.read_text())["install"]
    return [str(item["download_info"]["url"]) for item in installs]


def write_root_pyproject(artifact: Path, target: Path) -> Path:
    """A pyproject.toml naming the artifact (name, version, licence) for the SBOM's root component.

    The projects' own files cannot serve: their version is dynamic (read from the code at build time).
    """
    metadata = artifact_metadata(artifact)
    fields = {
        "name": metadata["Name"],
        "version": metadata["Version"],
        "description": metadata["Summary"],
        "license": metadata["License-Expression"],
    }
    target.write_text("[project]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in fields.items()))
    return target


def artifact_metadata(artifact: Path) -> dict[str, str]:
    if artifact.suffix == ".whl":
        with zipfile.ZipFile(artifact) as wheel:
            name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
            text = wheel.read(name).decode()
    else:
        with tarfile.open(artifact) as sdist:
            member = next(m for m in sdist.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO"))
            handle = sdist.extractfile(member)
            assert handle is not None
            text = handle.read().decode()
    message = Parser().parsestr(text)
    return {key: str(message[key]) for key in ("Name", "Version", "Summary", "License-Expression")}


# -- TypeScript -----------------------------------------------------------------------------------


def pack_typescript_sdk(out: Path) -> Path:
    sdk = REPO / "typescript-sdk"
    run(["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"], cwd=sdk)
    run(["npm", "pack", "--pack-destination", str(out)], cwd=sdk)  # its prepack script builds dist/
    [tarball] = out.glob("*.tgz")
    return tarball


def npm_sbom(tarball: Path, work: Path, out: Path) -> None:
    """Install the tarball into an empty project, as a user would, and describe what it brought."""
    project = work / f"install-of-{tarball.stem}"
    project.mkdir(parents=True)
    manifest = {"name": f"install-of-{tarball.stem}", "version": "0.0.0", "private": True,
                "dependencies": {"exospherehost": tarball.as_uri()}}  # fmt: skip
    (project / "package.json").write_text(json.dumps(manifest, indent=2))
    run(["npm", "install", "--no-audit", "--no-fund", "--prefer-offline"], cwd=project)
    sbom = run(["npm", "sbom", "--sbom-format", "cyclonedx", "--omit", "dev"], cwd=project, stdout_only=True)
    json_target = out / f"{tarball.name}.cdx.json"
    json_target.write_text(sbom)
    (out / f"{tarball.name}.cdx.xml").write_text(cyclonedx_json_to_xml(json.loads(sbom)))


def cyclonedx_json_to_xml(document: dict[str, object]) -> str:
    """The same bill of materials as CycloneDX XML, validated against the schema of its version."""
    from cyclonedx.model.bom import Bom
    from cyclonedx.output import make_outputter
    from cyclonedx.schema import OutputFormat, SchemaVersion
    from cyclonedx.validation import make_schemabased_validator

    version = SchemaVersion.from_version(str(document["specVersion"]))
    bom = Bom.from_json(document)  # type: ignore[attr-defined]
    xml: str = make_outputter(bom, OutputFormat.XML, version).output_as_string(indent=2)
    error = make_schemabased_validator(OutputFormat.XML, version).validate_str(xml)
    if error is not None:
        raise SystemExit(f"the npm SBOM does not convert to valid CycloneDX XML: {error}")
    return xml


# -- common ---------------------------------------------------------------------------------------


def write_checksums(out: Path) -> None:
    lines = [f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n" for path in sorted(out.iterdir())]
    (out / "SHA256SUMS").write_text("".join(lines))


def run(command: list[str], cwd: Path | None = None, stdout_only: bool = False) -> str:
    """Run `command`; its output (stdout, and stderr unless `stdout_only`) on success, or exit with it."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout if stdout_only else done.stdout + done.stderr


if __name__ == "__main__":
    main()
