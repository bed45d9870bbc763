"""Option groups shared by several commands: one definition, one meaning."""

from __future__ import annotations

import types
import typing
from dataclasses import fields

import click

from ..config import RunConfig


def config_options(command):
    """One option per RunConfig field, so the command line and TOML keys never drift apart."""
    hints = typing.get_type_hints(RunConfig)
    for f in reversed(fields(RunConfig)):
        if f.metadata.get("internal"):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        help_text = f.metadata["help"] + ("" if f.default is None else f" [default: {f.default}]")
        if kind is bool:
            command = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None,
                                   help=help_text)(command)
        elif f.metadata.get("choices"):
            choices = f.metadata["choices"]
            # a long list (24 method names) is spelled out by the help text's rule instead
            metavar = f.name.upper() if len(choices) > 8 else None
            command = click.option(flag, f.name, type=click.Choice(choices), metavar=metavar,
                                   default=None, help=help_text)(command)
        else:
            command = click.option(flag, f.name, type=kind, default=None, help=help_text)(command)
    return command


def _apply(command, options):
    for option in reversed(options):
        command = option(command)
    return command


def _remember(ctx: click.Context, param: click.Parameter, value):
    """Options that only matter for a NIR source go to the context, not to every command."""
    ctx.meta[f"neurokd.{param.name}"] = value
    return value


def source_options(command):
    """Where the student comes from: a checkpoint, a NIR file, or a user's model (export and
    energy)."""
    from ..student.nir.reader import CONVENTIONS

    return _apply(command, [
        click.argument("checkpoint", required=False, type=click.Path(dir_okay=False)),
        click.option("--model", "model_spec", metavar="PKG.MODULE:FN",
                     help="a function (or module attribute) returning your spikingjelly model"),
        click.option("--weights", type=click.Path(dir_okay=False),
                     help="state_dict for --model (loaded with weights_only=True)"),
        click.option("--input-shape", help="input shape of --model or a NIR file, e.g. 1,8,8"),
        click.option("--timesteps", type=int, help="timesteps T of --model or a NIR file"),
        click.option("--nir-convention", type=click.Choice(list(CONVENTIONS)), default="nir",
                     show_default=True, expose_value=False, callback=_remember,
                     help="how a .nir source's time constants are meant: " + "; ".join(
                         f"{c.name}: {c.summary}" for c in CONVENTIONS.values())),
        click.option("--nir-dt", type=click.FloatRange(min=0, min_open=True),
                     expose_value=False, callback=_remember,
                     help="seconds per step of a .nir source (default: its metadata, else the "
                     "convention's)"),
    ])


def data_options(command, random: bool = True):
    """Which samples to run on (export checks, simulate, energy report)."""
    options = [
        click.option("--dataset", help="use this data set (default: the one the run or export "
                     "was made from)"),
        click.option("--data-dir", type=click.Path(file_okay=False),
                     help="folder of --dataset (CIFAR, imagefolder; default: the run's)"),
    ]
    if random:
        options.append(click.option(
            "--random-inputs", is_flag=True,
            help="run on seeded N(0,1) inputs instead of a data set (e.g. --model without one)"))
    return _apply(command, options)


def samples_option(command):
    return click.option("--samples", type=click.IntRange(min=1),
                        help="the first N test samples (default: all; 256 random inputs with "
                        "--random-inputs)")(command)


def output_option(flag: str, dest: str, what: str):
    """An output file option; the file's folder must exist (checked before any work)."""
    return click.option(flag, dest, type=click.Path(dir_okay=False), help=what)


def random_weights_option(what: str):
    return click.option("--random-weights", is_flag=True,
                        help=f"{what} --model with the random initial weights its builder makes "
                        "(without it, --model needs --weights)")


EXIT_RULE_NAMES = ("confidence", "entropy", "margin")  # neurokd.anytime.EXIT_RULES


def exit_options(does: str, default: str, no_exit: str):
    """``--exit-rule R --exit-threshold C`` and ``--no-exit`` (energy report, simulate): one
    definition; ``neurokd.energy.estimation.exit_choice`` checks their values (one line, exit
    2). The rule names are spelled out here so that ``--help`` imports no torch (the registry
    does); tests/test_simulate.py holds them to ``neurokd.anytime.EXIT_RULES``."""
    return lambda command: _apply(command, [
        click.option("--exit-rule", help=f"{does} under this rule ({', '.join(EXIT_RULE_NAMES)}"
                     f"; docs/anytime.md), with --exit-threshold; default: {default}"),
        click.option("--exit-threshold", type=float, help="the exit rule's threshold c"),
        click.option("--no-exit", is_flag=True, help=no_exit),
    ])


def quiet_option(command):
    return click.option("--quiet", "-q", is_flag=True, help="no progress output")(command)


def load_source(checkpoint, model_spec, weights, input_shape, timesteps,
                random_weights: bool | None = None):
    from ..student.sources import load_source as load

    meta = click.get_current_context().meta
    return load(checkpoint, model_spec, weights, input_shape, timesteps,
                meta.get("neurokd.nir_convention") or "nir", meta.get("neurokd.nir_dt"),
                random_weights)
