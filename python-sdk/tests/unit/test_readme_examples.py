"""The README's examples are the repository's running code, not copies that drift from it."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_every_snippet_marked_as_taken_from_a_file_is_in_that_file() -> None:
    readme = (REPO / "python-sdk" / "README.md").read_text()
    snippets = re.findall(r"<!-- from (\S+) -->\n```python\n(.*?)```", readme, re.S)
    assert snippets, "the README lost its examples taken from examples/"
    for source, snippet in snippets:
        assert snippet in (REPO / source).read_text(), f"the README's snippet of {source} is not in it any more"


def test_the_readme_shows_unites_and_the_unit_of_every_retry_delay() -> None:
    readme = (REPO / "python-sdk" / "README.md").read_text()
    assert "unites=UnitesModel(identifier=" in readme
    assert "| `backoff_factor` | `2000` | base delay, **milliseconds**" in readme
    for strategy in ("EXPONENTIAL", "LINEAR", "FIXED", "_FULL_JITTER", "_EQUAL_JITTER"):
        assert f"`{strategy}`" in readme or f"`…{strategy}`" in readme, strategy
