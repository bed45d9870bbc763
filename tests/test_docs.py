"""Docs that are generated from the code (registries, --help) and from the results files match
them; links and file paths in the docs lead to files of the repository; the README names every
command."""

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


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_links_lead_to_files_inside_the_repository():
    """Every relative link resolves to a file of the repository (and its #anchor to a
    heading there); the README links to nothing outside it."""
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            where = (page.name, target)
            if target.startswith(("http:", "https:", "mailto:")):
                assert page.name != "README.md", where
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.is_relative_to(ROOT) and file.exists(), where
            if anchor and file.suffix == ".md":
                assert anchor in _anchors(file), where


def _backticked_paths(text: str) -> set[str]:
    """Repository files named in backticks (``neurokd/cli/plot.py``, ``../tests/x.py``):
    `{md,json}` alternatives expanded; outputs a command writes (runs/...) left out."""
    paths = set()
    for span in re.findall(r"`([^`\s]+)`", text):
        span = span.split("::")[0]
        if not re.fullmatch(r"(\.\./)*(neurokd|exporters|energy|tests|tools|benchmarks|examples)"
                            r"/[\w./-]*\.(py|sh|md|json|png|toml|\{[\w,]+\})", span):
            continue
        if "/runs/" in span:
            continue
        stem, _, rest = span.partition("{")
        if rest:
            choices, _, tail = rest.partition("}")
            paths.update(stem + choice + tail for choice in choices.split(","))
        else:
            paths.add(span)
    return paths


def test_file_paths_in_the_docs_exist():
    """A module the docs name (``energy/pricing.py``) is where they say, so a move or a rename
    cannot leave a doc pointing at nothing."""
    missing = []
    for page in PAGES:
        for path in _backticked_paths(page.read_text(encoding="utf-8")):
            base = page.parent if path.startswith("../") else ROOT
            if not (base / path).resolve().is_file():
                missing.append((page.name, path))
    assert missing == []


def test_the_path_check_sees_a_missing_module():
    text = "see `energy/report.py`, `exporters/loihi/export.py` and `../benchmarks/results/x.{md,json}`"
    assert _backticked_paths(text) == {"energy/report.py", "exporters/loihi/export.py",
                                       "../benchmarks/results/x.md", "../benchmarks/results/x.json"}
    assert not (ROOT / "energy" / "report.py").exists()


def _resolves(dotted: str) -> bool:
    """``neurokd.energy.synops``: the longest importable module, then attributes."""
    import importlib

    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:end]))
        except ImportError:
            continue
        for name in parts[end:]:
            if not hasattr(value, name):
                return False
            value = getattr(value, name)
        return True
    return False


def test_python_names_in_the_docs_exist():
    """`neurokd.X.Y` in backticks, where X is a module of the package, names a module or an
    attribute that exists (`neurokd.dataset` and the like are metadata keys, not modules)."""
    import importlib.util

    missing = []
    for page in PAGES:
        for dotted in re.findall(r"`(neurokd(?:\.\w+)+)", page.read_text(encoding="utf-8")):
            top = ".".join(dotted.split(".")[:2])
            if importlib.util.find_spec(top) is not None and not _resolves(dotted):
                missing.append((page.name, dotted))
    assert missing == []


def test_the_readme_names_every_command():
    import click

    from neurokd.cli import COMMANDS, cli

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    context = click.Context(cli, info_name="neurokd")
    for name in COMMANDS:
        command = cli.get_command(context, name)
        names = [f"neurokd {name}"]
        if isinstance(command, click.Group):
            names = [f"neurokd {name} {sub}" for sub in command.list_commands(context)]
        for full in names:
            assert full in readme, f"README.md does not mention `{full}`"


def test_the_readme_leads_with_two_commands_and_keeps_no_test_counts():
    """`make demo` and `make test` first, then one line on the quick loop; counts and times of
    the test suite go stale with every test, so the README says what the commands run."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    title, commands, quick = readme.split("\n\n")[:3]
    assert [line.split("#")[0].strip() for line in commands.splitlines()] == ["make demo",
                                                                             "make test"]
    assert "make test-fast" in quick and "\n" not in quick
    assert not re.search(r"\b\d[\d,]* (tests|without the `slow`)", readme)


def test_demo_figures_come_from_figures_json():
    """The demo student's figures in README.md, results.md and energy.md are generated blocks
    over one results file: the SOP count appears nowhere else."""
    import doc_figures

    sops = f"{doc_figures._row('45nm-fp32', 'compute')['synops']:,.0f}"
    for page in [ROOT / "README.md", ROOT / "docs" / "results.md", ROOT / "docs" / "energy.md"]:
        text = page.read_text(encoding="utf-8")
        outside = re.sub(r"<!-- ([\w-]+):start -->.*?<!-- \1:end -->", "", text, flags=re.S)
        assert sops not in outside, page.name
    assert {file for file, _ in doc_figures.BLOCKS.values()} == {"README.md", "results.md",
                                                                  "energy.md"}
