"""`--help` of every command: a summary that `neurokd --help` shows whole, help text on every
option, and examples."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from neurokd.cli import cli

from helpers import run_cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if isinstance(command, click.Group):
            yield prefix + (name,), command
            yield from _commands(command, prefix + (name,))
        else:
            yield prefix + (name,), command


COMMANDS = dict(_commands(cli))
LEAVES = [path for path, c in COMMANDS.items() if not isinstance(c, click.Group)]


def test_every_command_is_walked():
    assert {("distill",), ("export",), ("simulate",), ("plot",), ("energy", "report"),
            ("energy", "profiles")} <= set(LEAVES)


@pytest.mark.parametrize("group", [(), ("energy",)], ids=["neurokd", "energy"])
def test_summaries_are_whole_in_the_command_list(group, capsys):
    outcome = run_cli(capsys, *group, "--help")
    listing = outcome.out.split("Commands:", 1)[1].splitlines()[1:]
    shown = dict(line.split(None, 1) for line in listing if line.strip())
    names = [path[-1] for path in COMMANDS if path[:-1] == group]
    assert sorted(shown) == sorted(names)
    for name, summary in shown.items():
        command = COMMANDS[(*group, name)]
        assert command.short_help, f"{name} has no short_help"
        assert summary.strip() == command.short_help  # on one line, not cut off


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_every_option_has_help_and_the_command_has_examples(path, capsys):
    command = COMMANDS[path]
    missing = [p.opts[0] for p in command.params
               if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert not missing, f"{' '.join(path)}: no help text for {missing}"
    outcome = run_cli(capsys, *path, "--help")
    assert outcome.code == 0
    assert "Examples:" in outcome.out and f"neurokd {' '.join(path)} " in outcome.out


@pytest.mark.parametrize("argv", [["--help"], ["energy", "profiles"], ["energy", "--help"],
                                  ["distill", "--help"]])
def test_help_and_the_profiles_import_no_torch(argv):
    """`neurokd --help` took 2.6 s, all of it importing torch through the package face; the
    listing, the profiles and a command's own help need none of it (timings: benchmarks/
    startup.py). Checked in a fresh interpreter: what it imported, not how long it took."""
    code = "\n".join([
        "import sys", "from neurokd.cli import main", "try:", f"    main({argv!r})",
        "except SystemExit:", "    pass",
        "heavy = [m for m in ('torch', 'spikingjelly', 'onnx', 'h5py', 'sklearn')",
        "         if m in sys.modules]", "print('HEAVY', heavy)"])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    heavy = done.stdout.strip().splitlines()[-1]
    allowed = "['torch']" if argv[0] == "distill" else "[]"  # its options list RunConfig's
    assert heavy in ("HEAVY []", f"HEAVY {allowed}"), (heavy, done.stderr[-500:])
