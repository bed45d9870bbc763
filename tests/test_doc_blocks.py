"""Every command and code block of README.md and docs/*.md runs as written in a fresh clone
after `make demo`, so none can rot unseen:

- each `neurokd ...` line names a command that exists, with options it has, values its choices
  and numbers take and no stray arguments (parsed by click itself, nothing run); `make X` names
  a target of the Makefile, `. .venv/bin/activate` and the like a file that is there;
- the lines run for real, in one folder whose `runs/demo` is the session's trained run, in
  reading order (README.md, then docs/ by name): the quick ones here, all of them (Lava, the
  NIR consumers, the Python blocks that train, and what needs their files) in the slow test;
- lines that train (`distill`, `sweep`; `make demo` runs for real below) or stand for the
  reader's own data, models and files are only parsed.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from helpers import requires_lava, run_cli

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCES = {"python": "python", "toml": "toml", "json": "json", "sh": "shell", "bash": "shell",
          "console": "shell", "shell": "shell"}
# Words an indented shell block starts with (anything else must be another kind, or the
# block is reported unclassified: a new kind of block cannot slip past the test).
SHELL_WORDS = {"neurokd", ".venv/bin/neurokd", "make", ".", "tensorboard", "torchrun", "bash",
               "python", ".venv/bin/python"}
# What stands for the reader's own files, folders and models (nothing in a clone makes them).
OWN_FILES = {"w.pt", "snntorch_net.nir", "model.nir"}
OUTPUT_PARAMS = {"output", "json_path", "save_path", "plot_path", "log_dir"}
# Commands and calls that train: parsed here; `make demo` runs a training for real below, the
# slow test runs the Python blocks that train.
TRAINING_COMMANDS = {"distill", "sweep"}
TRAINING_CALL = re.compile(r"\b(distill|sweep)\w*\(")
SHELL_OPERATORS = {"&", "&&", ";", "|", "||"}
FILE_LITERAL = re.compile(r"[\w./-]+\.(pt|npz|toml|onnx|net|nir|json|png)")


@dataclass(frozen=True)
class Block:
    where: str   # page:line of its first line
    kind: str    # shell, python, json, toml, text or unknown
    text: str
    intro: str   # the paragraph above it (a TOML block names its file there)


def doc_blocks(page: Path) -> list[Block]:
    """The fenced blocks and the indented (4-space) blocks of a Markdown page."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0

    def intro(start: int) -> str:
        end = start
        while end > 0 and not lines[end - 1].strip():
            end -= 1
        begin = end
        while begin > 0 and lines[begin - 1].strip():
            begin -= 1
        return "\n".join(lines[begin:end])

    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            kind = FENCES.get(line[3:].strip().lower(), "text")
            blocks.append(Block(f"{page.name}:{i + 1}", kind, "\n".join(lines[i + 1:end]),
                                intro(i)))
            i = end + 1
        elif line.startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or (
                    not lines[end].strip() and end + 1 < len(lines)
                    and lines[end + 1].startswith("    "))):
                end += 1
            text = "\n".join(row[4:] for row in lines[i:end])
            blocks.append(Block(f"{page.name}:{i + 1}", _indented_kind(text), text, intro(i)))
            i = end
        else:
            i += 1
    return blocks


def _indented_kind(text: str) -> str:
    first = text.strip()
    if first.startswith(("{", "[")):
        return "json"
    if first.startswith(("import ", "from ")):
        return "python"
    word = first.split()[0]
    if word in SHELL_WORDS:
        return "shell"
    # a formula or an output is text; a command this test does not know is reported
    on_path = shutil.which(word) or (Path(sys.executable).parent / word).exists()
    return "unknown" if on_path else "text"


BLOCKS = [block for page in PAGES for block in doc_blocks(page)]


def command_lines(block: Block) -> list[list[str]]:
    """A shell block's commands as argv lists: continuations joined, comments and prompts
    dropped, `a & b` two commands."""
    commands = []
    for line in block.text.replace("\\\n", " ").splitlines():
        argv: list[str] = []
        for word in [*shlex.split(line.strip().removeprefix("$ "), comments=True), ";"]:
            if word not in SHELL_OPERATORS:
                argv.append(word)
            elif argv:
                commands.append(argv)
                argv = []
    return commands


def neurokd_args(argv: list[str]) -> list[str] | None:
    """The arguments after `neurokd` (also `.venv/bin/neurokd`, `torchrun ... -m neurokd`)."""
    if argv[0] in ("neurokd", ".venv/bin/neurokd"):
        return argv[1:]
    if argv[0] == "torchrun" and "-m" in argv:
        at = argv.index("-m")
        if argv[at + 1] == "neurokd":
            return argv[at + 2:]
    return None


@dataclass
class Parsed:
    path: tuple[str, ...]          # ("energy", "report")
    command: click.Command
    context: click.Context
    values: dict                   # the parameters the line gives, unconverted

    def inputs(self) -> list[str]:
        """The files and folders the line reads (a `.toml` profile included)."""
        found = []
        for param in self.command.get_params(self.context):
            value = self.values.get(param.name)
            if not isinstance(value, str) or param.name in OUTPUT_PARAMS:
                continue
            if isinstance(param.type, click.Path) or value.endswith(".toml"):
                found.append(value)
        return found


def parse(args: list[str]) -> Parsed:
    """Parse `neurokd ARGS` as the CLI would, running nothing: an unknown command or option, a
    value its choice or number refuses, or a stray argument raises click's error. (click's own
    `resilient_parsing` drops unknown options silently, so the parsers are called directly.)"""
    from neurokd.cli import cli

    command, context, rest, path = cli, None, list(args), []
    while True:
        context = click.Context(command, info_name=path[-1] if path else "neurokd",
                                parent=context)
        values, extra, _ = command.make_parser(context).parse_args(rest)
        if isinstance(command, click.Group) and extra:
            sub = command.get_command(context, extra[0])
            if sub is None:
                raise click.UsageError(f"no such command {extra[0]!r}", context)
            path.append(extra[0])
            command, rest = sub, extra[1:]
            continue
        if extra:
            raise click.UsageError(f"unexpected extra arguments {extra}", context)
        for param in command.get_params(context):
            # files are the run's business (they may be made by an earlier line)
            if param.name in values and not isinstance(param.type, click.Path):
                param.type.convert(values[param.name], param, context)
        return Parsed(tuple(path), command, context, values)


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {name for names in re.findall(r"^([\w .-]+):(?!=)", text, flags=re.M)
            for name in names.split()}


def check_other_command(argv: list[str], where: str) -> None:
    """A shell line that is not neurokd's: what it names exists."""
    head = argv[0]
    if head == "make":
        for target in (a for a in argv[1:] if "=" not in a and not a.startswith("-")):
            assert target in makefile_targets(), (where, argv)
    elif head in (".", "bash", "python", ".venv/bin/python"):
        assert (ROOT / argv[1]).is_file(), (where, argv)
    elif head == "tensorboard":  # installed with neurokd's dev extras, beside neurokd itself
        assert (Path(sys.executable).parent / "tensorboard").exists(), (where, argv)
    else:
        raise AssertionError(f"{where}: no check for the command {head!r}: {argv}")


def test_every_block_is_of_a_known_kind():
    unknown = [(b.where, b.text.splitlines()[0]) for b in BLOCKS if b.kind == "unknown"]
    assert unknown == []
    kinds = {b.kind for b in BLOCKS}
    assert {"shell", "python", "json", "toml"} <= kinds, kinds
    assert _indented_kind("pip install neurokd") == "unknown"
    assert _indented_kind("mean steps(c) = 1 + #{t : m_t fails c}") == "text"


def test_the_block_reader_sees_fences_indents_and_continuations(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("Text.\n\n    neurokd energy report a.pt \\\n        --profile loihi  # why\n"
                    "    make demo\n\n```console\n$ neurokd energy profiles & make lava\n```\n\n"
                    "A list:\n   continued, not code\n\n```text\nneurokd nope\n```\n")
    blocks = doc_blocks(page)
    assert [(b.where, b.kind) for b in blocks] == [("page.md:3", "shell"),
                                                  ("page.md:7", "shell"),
                                                  ("page.md:14", "text")]
    assert command_lines(blocks[0]) == [["neurokd", "energy", "report", "a.pt", "--profile",
                                         "loihi"], ["make", "demo"]]
    assert command_lines(blocks[1]) == [["neurokd", "energy", "profiles"], ["make", "lava"]]


def _neurokd_lines() -> list[tuple[str, list[str]]]:
    return [(b.where, args) for b in BLOCKS if b.kind == "shell" for argv in command_lines(b)
            if (args := neurokd_args(argv)) is not None]


def test_every_command_line_names_commands_and_options_that_exist():
    lines = _neurokd_lines()
    assert len(lines) > 30  # the README's and docs' command lines were found
    failures = []
    for where, args in lines:
        try:
            parse(args)
        except click.ClickException as exc:
            failures.append(f"{where}: neurokd {shlex.join(args)}: {exc.format_message()}")
    assert failures == []
    for block in BLOCKS:
        if block.kind == "shell":
            for argv in command_lines(block):
                if neurokd_args(argv) is None:
                    check_other_command(argv, block.where)


@pytest.mark.parametrize("args, error", [
    ("energy report runs/demo/student.pt --profil loihi", "No such option"),
    ("energy reprot runs/demo/student.pt", "no such command"),
    ("export --target onnxx runs/demo/student.pt", "onnxx"),
    ("energy report runs/demo/student.pt --samples many", "many"),
    ("simulate a.net b.net", "unexpected extra"),
    ("export --target", "requires an argument"),
])
def test_the_parse_check_fails_a_wrong_line(args, error):
    with pytest.raises(click.ClickException) as caught:
        parse(shlex.split(args))
    assert error.lower() in caught.value.format_message().lower()


def test_a_python_or_json_block_at_least_compiles():
    for block in BLOCKS:
        if block.kind == "python":
            compile(block.text, block.where, "exec")
        elif block.kind == "json":
            json.loads(block.text)


def test_each_command_the_docs_use_answers_help(capsys):
    paths = {parse(args).path for _, args in _neurokd_lines()}
    assert {("distill",), ("export",), ("simulate",), ("energy", "report"), ("plot",)} <= paths
    for path in sorted(paths):
        outcome = run_cli(capsys, *path, "--help")
        assert outcome.code == 0, (path, outcome.err)
        assert f"Usage: neurokd {' '.join(path)}" in outcome.out


def test_the_readme_says_how_neurokd_is_on_the_path_and_the_binary_answers():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert ". .venv/bin/activate" in readme and ".venv/bin/neurokd" in readme
    binary = Path(sys.executable).parent / "neurokd"  # what .venv/bin/neurokd is in this venv
    proc = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("Usage: neurokd"), proc.stderr


# --- running the lines ---------------------------------------------------------------------


def _kind(parsed: Parsed, args: list[str]) -> str:
    """parse (only parsed), slow (Lava, the NIR consumers) or quick."""
    if "--help" in args or "-h" in args:
        return "quick"
    if parsed.path[0] in TRAINING_COMMANDS:
        return "parse"
    if any(a.startswith(("~/", "mypkg.")) or a in OWN_FILES for a in args):
        return "parse"
    lava = (parsed.path == ("export",) and parsed.values.get("target") == "loihi") or (
        parsed.path == ("simulate",) and (parsed.values.get("backend") == "lava" or str(
            parsed.values.get("export_path", "")).endswith(".net")))
    return "slow" if lava or parsed.values.get("check_consumers") else "quick"


def _trained_folder(parsed: Parsed) -> Path | None:
    """The run folder a `distill` line would write (the CLI's own RunConfig of the line), so
    that the lines after it that read its files are only parsed too."""
    from dataclasses import fields

    from neurokd.config import RunConfig
    from neurokd.errors import NeuroKDError

    if parsed.path != ("distill",) or "resume_dir" in parsed.values:
        return None
    keys = {f.name for f in fields(RunConfig)}
    options = {param.name: param.type.convert(parsed.values[param.name], param, parsed.context)
               for param in parsed.command.get_params(parsed.context)
               if param.name in keys and param.name in parsed.values}
    try:
        return RunConfig.from_sources(parsed.values.get("config_path"), options,
                                      parsed.values.get("preset")).run_dir
    except NeuroKDError:  # the reader's own data folder and the like: nothing to follow
        return None


def _python_kind(block: Block, folder: Path) -> str:
    if TRAINING_CALL.search(block.text):
        return "slow"
    literals = [node.value for node in ast.walk(ast.parse(block.text))
                if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    missing = [v for v in literals if FILE_LITERAL.fullmatch(v) and not (folder / v).exists()]
    return "slow" if missing else "quick"


def _toml_file(block: Block) -> str | None:
    """The file a TOML block is the content of, as the text above it names it."""
    names = re.findall(r"`[^`]*?([\w.-]+\.toml)`", block.intro)
    return names[0] if len(set(names)) == 1 else None


@pytest.fixture
def demo_folder(trained_run, tmp_path, monkeypatch) -> Path:
    """A folder like the repository's root after `make demo`: runs/demo is the session's
    trained run (copied: the lines write their exports beside it)."""
    shutil.copytree(trained_run, tmp_path / "runs" / "demo",
                    ignore=shutil.ignore_patterns(".neurokd.lock"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_the_docs(folder: Path, capsys, everything: bool) -> list[str]:
    """Run the docs' lines and Python blocks in reading order in ``folder``; the quick ones
    only unless ``everything``. Returns what ran."""
    ran, done, trained = [], set(), []
    for block in BLOCKS:  # a file a page shows is there before any line reads it
        if block.kind == "toml" and (name := _toml_file(block)):
            (folder / name).write_text(block.text + "\n", encoding="utf-8")
    for block in BLOCKS:
        if block.kind == "python":
            if everything or _python_kind(block, folder) == "quick":
                exec(compile(block.text, block.where, "exec"), {"__name__": "__doc_block__"})
                ran.append(block.where)
        elif block.kind == "shell":
            for argv in command_lines(block):
                args = neurokd_args(argv)
                if args is None or tuple(args) in done:  # the same line twice proves nothing new
                    continue
                parsed = parse(args)
                if folder_of_run := _trained_folder(parsed):
                    trained.append(folder_of_run)
                kind = _kind(parsed, args)
                if kind == "parse" or (kind == "slow" and not everything):
                    continue
                missing = [p for p in parsed.inputs() if not (folder / p).exists()]
                if any(Path(p).is_relative_to(run) for p in missing for run in trained):
                    continue  # it reads a run that only a training above makes
                if missing and not everything:
                    continue  # made by a slow line above: the slow test runs both
                line = f"{block.where}: neurokd {shlex.join(args)}"
                assert not missing, f"{line}: nothing above it makes {missing}"
                outcome = run_cli(capsys, *args)
                assert outcome.code == 0, f"{line}\n{outcome.err}"
                ran.append(line)
                done.add(tuple(args))
    return ran


def test_the_quick_lines_and_blocks_run_as_written(demo_folder, capsys):
    ran = run_the_docs(demo_folder, capsys, everything=False)
    commands = " | ".join(ran)
    for expected in ("neurokd energy report runs/demo/student.pt --profile loihi",
                     "neurokd energy profiles", "neurokd export --target onnx runs/demo",
                     "neurokd export --target onnx --spikes runs/demo/student.pt",
                     "neurokd simulate runs/demo/student.spikes.onnx",
                     "neurokd plot runs/demo", "--profile my-chip.toml", "losses.md:"):
        assert expected in commands, expected
    assert (demo_folder / "runs" / "demo" / "student.spikes.onnx").is_file()
    assert (demo_folder / "e.png").is_file() and json.loads((demo_folder / "e.json").read_text())


@requires_lava
def test_every_line_and_block_runs_as_written(demo_folder, capsys):
    """All of it: the Loihi exports and Lava runs, the NIR consumers, the deployed-run energy,
    and the Python blocks (the README's trains its own run)."""
    ran = run_the_docs(demo_folder, capsys, everything=True)
    assert any("--from-sim r.npz" in line for line in ran)
    assert any(line.startswith("README.md:") and "neurokd" not in line for line in ran)
    assert (demo_folder / "runs" / "api-demo" / "student.onnx").is_file()


# --- make demo and the examples ------------------------------------------------------------


def _make_demo(runs: Path, **variables: str) -> subprocess.CompletedProcess:
    # -o: the venv this test runs in is the installed one; a test must not reinstall it
    stamp = ".venv/.neurokd-installed"
    settings = [f"{k}={v}" for k, v in {"RUNS": str(runs), **variables}.items()]
    return subprocess.run(["make", "--no-print-directory", "-o", stamp, "demo", *settings],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)


def test_make_demo_passes_its_folder_replaces_its_own_run_and_says_what_next(tmp_path):
    """The Makefile's logic, with a stand-in neurokd that only prints what it was given."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "neurokd").write_text('#!/bin/sh\necho "neurokd called: $*"\n')
    (fake / "neurokd").chmod(0o755)
    runs = tmp_path / "my runs"  # a space: the folder is quoted
    first = _make_demo(runs, BIN=str(fake))
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert f"neurokd called: distill --name demo --out {runs} --overwrite" in lines
    assert "replacing" not in first.stdout
    assert lines[-1] == (f"next: {fake}/neurokd energy report {runs}/demo/student.pt   "
                         f"(or . {fake}/activate, then the README's commands)")
    (runs / "demo").mkdir(parents=True)
    (runs / "demo" / "student.pt").write_bytes(b"the first demo run")
    second = _make_demo(runs, BIN=str(fake))
    assert second.returncode == 0, second.stderr
    assert f"make demo: replacing the earlier demo run in {runs}/demo" in \
        second.stdout.splitlines()


@pytest.mark.slow  # two real demo trainings
def test_make_demo_twice_into_another_folder(tmp_path):
    runs = tmp_path / "runs"
    first = _make_demo(runs, BIN=str(Path(sys.executable).parent))
    assert first.returncode == 0, first.stderr
    assert "replacing" not in first.stdout and first.stdout.splitlines()[-1].startswith("next: ")
    metrics = (runs / "demo" / "metrics.json").read_text()
    second = _make_demo(runs, BIN=str(Path(sys.executable).parent))
    assert second.returncode == 0, second.stderr
    assert f"make demo: replacing the earlier demo run in {runs}/demo" in second.stdout
    assert second.stdout.splitlines()[-1].startswith("next: ")
    assert (runs / "demo" / "metrics.json").read_text() != metrics  # a new run (its wall time)


@pytest.mark.slow  # trainings
def test_the_examples_run_as_written_and_again(tmp_path):
    """From a folder where `neurokd` is not on the PATH, twice (a second run replaces the
    first's runs)."""
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if Path(p, "neurokd").exists() is False)
    env = {**os.environ, "PATH": path}
    env.pop("NEUROKD", None)
    for _ in range(2):
        proc = subprocess.run(["bash", str(ROOT / "examples" / "distill_cli.sh")], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "runs" / "cli-example-kd" / "student.pt").is_file()
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "distill_api.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    assert "reloaded: accuracy" in proc.stdout
