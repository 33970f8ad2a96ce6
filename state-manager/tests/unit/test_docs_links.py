"""The user documentation points only inside the repository (or to the web), never to a path beside it."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "python-sdk" / "README.md",
         REPO / "typescript-sdk" / "README.md"]  # fmt: skip
LINK = re.compile(r"\]\(([^)#\s]+)[^)]*\)")
# A path written in backticks that climbs out of the docs' folder, as `../shared/spec/PROTOCOL.md` did.
CODE_PATH = re.compile(r"`(\.\./[^`\s]+)`")


def test_every_relative_link_and_path_of_the_docs_exists_in_the_repository() -> None:
    broken = []
    for page in PAGES:
        text = page.read_text()
        targets = [t for t in LINK.findall(text) if not t.startswith(("http://", "https://", "mailto:"))]
        for target in [*targets, *CODE_PATH.findall(text)]:
            resolved = (page.parent / target).resolve()
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, broken
