"""``neurokd sweep``: an accuracy–energy study over distill options (neurokd.train.sweep)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .options import quiet_option


@click.command()  # its one line: COMMANDS in neurokd/cli/__init__.py
@click.argument("spec_path", metavar="SPEC.toml", type=click.Path(dir_okay=False))
@click.option("--out", "folder", type=click.Path(file_okay=False),
              help="the sweep folder: study.db, runs/trial-NNNN, pareto.md/.csv/.png "
              "[default: sweeps/SPEC]")
@click.option("--storage", help="an Optuna storage URL shared by every worker (sqlite:///..., "
              "postgresql://..., mysql://...) [default: sqlite:///OUT/study.db]")
@click.option("--study", "study_name", help="the study's name in the storage [default: SPEC]")
@click.option("--trials", type=click.IntRange(min=1),
              help="COMPLETE trials to reach (overrides [sweep] trials)")
@click.option("--heartbeat", type=click.IntRange(min=1), default=None,
              help="seconds between a running trial's heartbeats; a trial silent for 3x this "
              "is taken as dead and retried [default: 10]")
@quiet_option
def sweep(spec_path: str, folder: str | None, storage: str | None, study_name: str | None,
          trials: int | None, heartbeat: int | None, quiet: bool) -> None:
    """Search distill options for accurate, low-energy students: an Optuna study whose
    trials are ordinary run folders; start the same command again to add a worker or to
    resume after Ctrl-C (docs/energy-aware.md).

    \b
    Examples:
      neurokd sweep sweep.toml                          # sweeps/sweep/, sqlite study
      neurokd sweep sweep.toml & neurokd sweep sweep.toml   # two workers, one study
      neurokd sweep sweep.toml --storage postgresql://u@host/db --out /shared/sweep
    """
    from ..runtime.progress import make_reporter
    from ..train.sweep import HEARTBEAT_S, read_spec, run_sweep, write_tables
    from .rate_pricing import EnergyPricer

    spec = read_spec(spec_path, trials)
    pricer = EnergyPricer.of(spec.profile, spec.energy_model, spec.ann)  # refused at once
    out = Path(folder) if folder else Path("sweeps") / Path(spec_path).stem
    with make_reporter(quiet) as reporter:
        result = run_sweep(spec, out, _trial_runner(pricer), storage,
                           study_name or Path(spec_path).stem, reporter,
                           heartbeat or HEARTBEAT_S)
    written = write_tables(result, out)
    if result.pareto:
        written.append(write_pareto_plot(result, out / "pareto.png", spec))
    click.echo(f"{len(result.trials)} trials complete ({result.ran_here} here); Pareto front "
               f"of {len(result.pareto)}: " + ", ".join(str(p) for p in written))


def _trial_runner(pricer):
    from ..runtime.progress import Reporter
    from ..train.distillation import distill
    from .rate_pricing import EnergyPricer, SplitPricer

    def run(config, resume: bool) -> dict[str, Any]:
        own = EnergyPricer.for_config(config)  # the trial's rate targets: its own options
        if own != pricer:
            pricer_here = SplitPricer(own, pricer)
        else:
            pricer_here = pricer
        # overwrite: a folder of this trial that holds no state to resume can only be the
        # leftover of an attempt killed before its first epoch
        return distill(config, Reporter(), resume=resume, overwrite=not resume,
                       pricer=pricer_here).metrics

    return run


def write_pareto_plot(result, path: Path, spec) -> Path:
    """Accuracy vs energy per inference of every COMPLETE trial, the Pareto front joined and
    its points labelled with their settings."""
    from ..train.sweep import _label
    from .figure import pyplot, write_png

    plt = pyplot()
    figure, axis = plt.subplots(figsize=(9, 5.5))
    axis.scatter([t["energy_pj"] for t in result.trials],
                 [100 * t["accuracy"] for t in result.trials], color="0.7", label="trial")
    front = sorted(result.pareto, key=lambda t: t["energy_pj"])
    axis.plot([t["energy_pj"] for t in front], [100 * t["accuracy"] for t in front], "o-",
              color="tab:blue", label="Pareto front")
    # trials with the same accuracy and energy share one point: one label, a line each
    labels: dict[tuple[float, float], list[str]] = {}
    for t in front:
        labels.setdefault((t["energy_pj"], 100 * t["accuracy"]), []).append(
            f"#{t['number']} " + (_label(t["params"]) or "base settings"))
    for point, lines in labels.items():  # above and right of its point: inside the axes
        axis.annotate("\n".join(lines), point, fontsize=7, ha="left", va="bottom",
                      xytext=(6, 3), textcoords="offset points")
    low, high = axis.get_xlim()
    axis.set_xlim(low, high + 0.6 * (high - low))  # room for the labels on the right
    axis.set_xlabel(f"energy per inference (pJ, {spec.profile}/{spec.energy_model})")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title(f"sweep {result.study_name}: {len(result.trials)} trials, Pareto front "
                   f"of {len(result.pareto)}")
    axis.legend(loc="lower right")
    return write_png(figure, path)
