"""Reading `exosphere trigger --from-file`: one trigger body per run, as JSON lines or one JSON list."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from exospherehost.cli.errors import EXIT_USAGE, CliError
from exospherehost.contract import TriggerRequest


def read_trigger_file(path: Path) -> list[dict[str, Any]]:
    """The trigger bodies in `path` ('-' for stdin), checked against the contract; a usage error naming
    the line (JSON lines) or the entry (a JSON list) that is wrong.

    Example::

        read_trigger_file(Path("runs.jsonl"))  # [{"inputs": {"user_id": "1"}}, ...]
    """
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read --from-file {path}: {exc.strerror}", EXIT_USAGE) from None
    stripped = text.strip()
    if not stripped:
        raise CliError(f"--from-file {path} holds no runs", EXIT_USAGE)
    if stripped.startswith("["):
        try:
            entries = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise CliError(f"--from-file {path} is not valid JSON: {exc}", EXIT_USAGE) from None
        return [_checked(entry, f"{path}, entry {index}") for index, entry in enumerate(entries)]
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CliError(f"--from-file {path}, line {number} is not valid JSON: {exc.msg}", EXIT_USAGE) from None
        found.append(_checked(entry, f"{path}, line {number}"))
    return found


def _checked(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise CliError(f'--from-file {where}: each run must be a JSON object such as {{"inputs": {{}}}}', EXIT_USAGE)
    try:
        TriggerRequest.model_validate(entry)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise CliError(f"--from-file {where}: {problems}", EXIT_USAGE) from None
    return entry
