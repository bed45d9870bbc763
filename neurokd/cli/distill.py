"""``neurokd distill``: train (or reuse) a teacher and distil a spiking student."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..config import RunConfig, load_toml
from ..errors import ConfigError
from .options import config_options, quiet_option


@click.command()  # its one line: COMMANDS in neurokd/cli/__init__.py
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="TOML file with any of the options below (the command line wins)")
@click.option("--preset", help="a recipe shipped with neurokd (cifar10-resnet19, "
              "cifar100-resnet19); --config and options override it")
@quiet_option
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="continue an interrupted run from RUN_DIR/last.pt with its saved settings")
@click.option("--overwrite", is_flag=True,
              help="replace a finished run of the same name (its files and exports go first)")
@config_options
def distill(config_path: str | None, preset: str | None, quiet: bool, resume_dir: str | None,
            overwrite: bool, **options: Any) -> None:
    """Distil a spiking student from an ANN teacher (default: digits, TSER, T=4).

    \b
    Examples:
      neurokd distill                                  # digits, CNN teacher and student
      neurokd distill --dataset mnist1d --method kd --epochs 40 --seed 1
      neurokd distill --preset cifar100-resnet19 --data-dir ~/data
      neurokd distill --config runs/demo/config.toml --lr 1e-3 --name demo-lr
      neurokd distill --resume runs/demo               # after Ctrl-C
    """
    from ..runtime.progress import make_reporter
    from ..train.distillation import distill as run_distill
    from .console import print_distill_summary

    if resume_dir:
        config = _resume_config(resume_dir, config_path or preset, options)
    else:
        config = RunConfig.from_sources(config_path, options, preset)
    pricer = _pricer(config)  # a bad profile or model fails before the folder is claimed
    with make_reporter(quiet) as reporter:
        result = run_distill(config, reporter, resume=bool(resume_dir), overwrite=overwrite,
                             exports=_export_names() if overwrite else (), pricer=pricer)
    if result.rank == 0:
        print_distill_summary(result)


def _pricer(config: RunConfig):
    """The energy registry's prices for a run with a rate term (its targets, and the result's
    rates against break-even in metrics.json); None without one: a plain distill imports no
    energy code."""
    if config.rate_target is None:
        return None
    from .rate_pricing import EnergyPricer

    return EnergyPricer.for_config(config)


def _export_names() -> tuple[str, ...]:
    """The exports ``--overwrite`` removes with the run, from the exporters' registry (imported
    only then: a plain distill loads no exporter)."""
    from ..exporters.registry import default_export_names

    return default_export_names()


def _resume_config(resume_dir: str, config_path: str | None, options: dict) -> RunConfig:
    """The saved settings of RUN_DIR; only --device may change on resume."""
    given = [k for k, v in options.items() if v is not None and k != "device"]
    if config_path or given:
        extra = "--config" if config_path else "--" + given[0].replace("_", "-")
        raise ConfigError(f"--resume continues a run with its saved settings; drop {extra}")
    run_dir = Path(resume_dir)
    saved = run_dir / "config.toml"
    if not saved.exists():  # one that is not a regular file is named by load_toml
        raise ConfigError(f"nothing to resume in {run_dir} (no config.toml)")
    values = load_toml(saved)
    values.update(out=str(run_dir.parent), name=run_dir.name)
    if options.get("device"):
        values["device"] = options["device"]
    return RunConfig.from_dict(values, source=str(saved))
