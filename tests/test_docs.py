"""Docs that are generated from the code (registries, --help) match it, and README links
stay inside the repository."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import gen_docs  # noqa: E402


def test_generated_blocks_are_current():
    assert gen_docs.regenerate(check=True) == [], "run: python tools/gen_docs.py"


def test_a_stale_block_is_caught(tmp_path, monkeypatch):
    for doc in (ROOT / "docs").glob("*.md"):
        (tmp_path / doc.name).write_text(doc.read_text())
    cli = tmp_path / "cli.md"
    cli.write_text(cli.read_text().replace("| `loihi` |", "| `loihi2` |"))
    monkeypatch.setattr(gen_docs, "DOCS", tmp_path)
    assert gen_docs.regenerate(check=True) == ["cli.md: targets-table"]


def test_readme_and_docs_link_only_inside_the_repository():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)]+)\)", page.read_text()):
            path = target.split("#")[0]
            if page.name == "README.md":
                assert not target.startswith(("http:", "https:")), (page.name, target)
            if path and not target.startswith(("http:", "https:")):
                assert (page.parent / path).exists(), (page.name, target)
