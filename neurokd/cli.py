"""The ``neurokd`` command: parse, call the library, print. Errors become one stderr line."""

from __future__ import annotations

import sys
import types
import typing
from dataclasses import fields
from typing import Any

import click

from .config import RunConfig
from .errors import NeuroKDError


def _config_options(command):
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
            command = click.option(flag, f.name, type=click.Choice(f.metadata["choices"]),
                                   default=None, help=help_text)(command)
        else:
            command = click.option(flag, f.name, type=kind, default=None, help=help_text)(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="show Python tracebacks on errors")
@click.version_option(package_name="neurokd")
def cli(debug: bool) -> None:
    """Distil ANN teachers into spiking students (TSER), export them, estimate their energy."""


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="TOML file with any of the options below (the command line wins)")
@click.option("--preset", help="a recipe shipped with neurokd (cifar10-resnet19, "
              "cifar100-resnet19); --config and options override it")
@click.option("--quiet", "-q", is_flag=True, help="no progress output")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="continue an interrupted run from RUN_DIR/last.pt with its saved settings")
@_config_options
def distill(config_path: str | None, preset: str | None, quiet: bool, resume_dir: str | None,
            **options: Any) -> None:
    """Distil a spiking student from an ANN teacher (default: digits, TSER, T=4)."""
    from .distill import distill as run_distill
    from .progress import make_reporter
    from .report import print_distill_summary

    if resume_dir:
        config = _resume_config(resume_dir, config_path or preset, options)
    else:
        config = RunConfig.from_sources(config_path, options, preset)
    with make_reporter(quiet) as reporter:
        result = run_distill(config, reporter, resume=bool(resume_dir))
    if result.rank == 0:
        print_distill_summary(result)


def _resume_config(resume_dir: str, config_path: str | None, options: dict) -> RunConfig:
    """The saved settings of RUN_DIR; only --device may change on resume."""
    from pathlib import Path

    from .config import load_toml
    from .errors import ConfigError

    given = [k for k, v in options.items() if v is not None and k != "device"]
    if config_path or given:
        extra = "--config" if config_path else "--" + given[0].replace("_", "-")
        raise ConfigError(f"--resume continues a run with its saved settings; drop {extra}")
    run_dir = Path(resume_dir)
    saved = run_dir / "config.toml"
    if not saved.is_file():
        raise ConfigError(f"nothing to resume in {run_dir} (no config.toml)")
    values = load_toml(saved)
    values.update(out=str(run_dir.parent), name=run_dir.name)
    if options.get("device"):
        values["device"] = options["device"]
    return RunConfig.from_dict(values, source=str(saved))


def _source_options(command):
    """Where the student comes from: a checkpoint, or a user's model (export and energy)."""
    options = [
        click.argument("checkpoint", required=False, type=click.Path(dir_okay=False)),
        click.option("--model", "model_spec", metavar="PKG.MODULE:FN",
                     help="a function (or module attribute) returning your spikingjelly model"),
        click.option("--weights", type=click.Path(dir_okay=False),
                     help="state_dict for --model (loaded with weights_only=True)"),
        click.option("--input-shape", help="input shape of --model, e.g. 1,8,8"),
        click.option("--timesteps", type=int, help="timesteps T of --model"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _data_options(command):
    """Which samples to run on (simulate and energy report): one definition, one meaning."""
    options = [
        click.option("--dataset", help="use this data set's test split (default: the one the "
                     "run or export was made from; random N(0,1) inputs for --model)"),
        click.option("--data-dir", type=click.Path(file_okay=False),
                     help="folder of --dataset (CIFAR, imagefolder; default: the run's)"),
        click.option("--samples", type=click.IntRange(min=1),
                     help="the first N test samples (default: all; 256 random for --model)"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _load_source(checkpoint, model_spec, weights, input_shape, timesteps):
    from .sources import load_source

    return load_source(checkpoint, model_spec, weights, input_shape, timesteps)


@cli.command()
@_source_options
@click.option("--target", required=True, type=click.Choice(["onnx", "nir", "loihi"]),
              help="file format to write")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="output file (default: beside the checkpoint, named after the target)")
@click.option("--teacher", "export_teacher", is_flag=True,
              help="export the ANN teacher instead of the student (onnx)")
@click.option("--spikes", is_flag=True, help="also output every neuron layer's spikes (onnx)")
@click.option("--check-samples", type=click.IntRange(min=1), default=512, show_default=True,
              help="test samples the written file is checked on")
@click.option("--lava-samples", type=click.IntRange(min=0), default=None,
              help="loihi: of those, run this many in Lava (.venv-lava) and require its spikes "
              "to equal the integer model's; 0 skips [default: 32]")
@click.option("--quiet", "-q", is_flag=True, help="no progress output")
def export(checkpoint, model_spec, weights, input_shape, timesteps, target, output,
           export_teacher, spikes, check_samples, lava_samples, quiet) -> None:
    """Write the student as ONNX, NIR or Loihi netx HDF5, checked against PyTorch first."""
    from . import report

    source = _load_source(checkpoint, model_spec, weights, input_shape, timesteps)
    if export_teacher and target != "onnx":
        raise click.UsageError("--teacher works with --target onnx only")
    if lava_samples is not None and target != "loihi":
        raise click.UsageError("--lava-samples works with --target loihi only")
    path = output or _default_output(checkpoint, source, target, export_teacher)
    if target == "onnx":
        from .exporters import export_onnx

        result = export_onnx(source, path, teacher=export_teacher, spike_outputs=spikes,
                             max_samples=check_samples)
        report.print_onnx_export(result)
    elif target == "nir":
        from .exporters import export_nir

        report.print_nir_export(export_nir(source, path, max_samples=check_samples))
    else:
        from .exporters import export_loihi
        from .progress import make_reporter

        with make_reporter(quiet) as reporter:
            result = export_loihi(source, path, max_samples=check_samples,
                                  lava_samples=32 if lava_samples is None else lava_samples,
                                  reporter=reporter)
        report.print_loihi_export(result)


def _default_output(checkpoint, source, target: str, teacher: bool) -> str:
    from pathlib import Path

    suffix = {"onnx": ".onnx", "nir": ".nir", "loihi": ".net"}[target]
    folder = Path(checkpoint).parent if checkpoint else Path(".")
    return str(folder / (("teacher" if teacher else source.label) + suffix))


@cli.command()
@click.argument("export_path", metavar="EXPORT", type=click.Path(dir_okay=False))
@click.option("--backend", type=click.Choice(["lava", "onnx"]), default="lava",
              show_default=True, help="lava: a Loihi export (.net) in Lava's CPU simulator, "
              "bit-accurate fixed point (.venv-lava); onnx: an ONNX export made with --spikes")
@_data_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="write the accuracies, agreement and spike counts to this JSON file")
@click.option("--save", "save_path", type=click.Path(dir_okay=False),
              help="write per-layer event counts to RESULT.npz (for energy report --from-lava)")
@click.option("--quiet", "-q", is_flag=True, help="no progress output")
def simulate(export_path, backend, dataset, data_dir, samples, json_path, save_path,
             quiet) -> None:
    """Run an export on a test split: Lava (vs the float and integer models) or ONNX Runtime."""
    from .exporters.simulate import simulate as run_simulation
    from .exporters.simulate import write_result
    from .fileio import write_json
    from .progress import make_reporter
    from .report import print_simulation

    with make_reporter(quiet) as reporter:
        result = run_simulation(export_path, backend, dataset, samples, reporter,
                                data_dir=data_dir)
    print_simulation(result)
    if json_path:
        write_json(json_path, result.to_json())
    if save_path:
        write_result(save_path, result)


@cli.group()
def energy() -> None:
    """Energy per inference: SOPs, MACs and spikes counted on real inputs, priced per chip."""


@energy.command("report")
@_source_options
@_data_options
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--profile", default="45nm-fp32", show_default=True,
              help="45nm-fp32, 45nm-int8, loihi, or a TOML file (see `neurokd energy profiles`)")
@click.option("--ann", type=click.Choice(["teacher", "twin", "none"]),
              help="ANN reference counted in MACs (default: the teacher, when there is one)")
@click.option("--from-lava", "lava_result", type=click.Path(dir_okay=False),
              help="RESULT.npz of `neurokd simulate`: price the deployed run's spike counts")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="write every number of the table to this JSON file")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="write per-layer energy and firing-rate bars to this PNG")
@click.option("--quiet", "-q", is_flag=True, help="no progress output")
def energy_report(checkpoint, model_spec, weights, input_shape, timesteps, dataset, data_dir,
                  samples, batch_size, profile, ann, lava_result, json_path, plot_path,
                  quiet) -> None:
    """Per-layer SOPs, MACs, neuron updates and energy of a student versus its ANN."""
    from .energy.render import print_report, write_plot, write_report_json
    from .energy.run import energy_report as run_report
    from .progress import make_reporter

    source = None
    if checkpoint or model_spec or not lava_result:
        source = _load_source(checkpoint, model_spec, weights, input_shape, timesteps)
    with make_reporter(quiet) as reporter:
        result = run_report(source, profile, ann, dataset, data_dir, samples, batch_size,
                            lava_result, reporter)
    print_report(result)
    if json_path:
        write_report_json(result, json_path)
    if plot_path:
        write_plot(result, plot_path)


@energy.command("profiles")
def energy_profiles() -> None:
    """List the built-in energy profiles (pJ per operation) and their sources."""
    from .energy.render import print_profiles

    print_profiles()


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    except SystemExit as exc:
        _end_worker(exc.code if isinstance(exc.code, int) else 1 if exc.code else 0)
        raise
    _end_worker(0)


def _end_worker(code: int) -> None:
    """Under torchrun, exit without interpreter finalisation (see distributed.end_worker)."""
    distributed = sys.modules.get("neurokd.distributed")  # never imported: not under torchrun
    if distributed is not None:
        distributed.end_worker(code)


def _main(argv: list[str] | None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="neurokd", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        print("neurokd: aborted", file=sys.stderr)
        sys.exit(130)
    except click.ClickException as exc:
        if debug:
            raise
        print(f"neurokd: error: {_one_line(exc.format_message())}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except NeuroKDError as exc:
        if debug:
            raise
        print(f"neurokd: error: {_one_line(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("neurokd: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if debug:
            raise
        print(f"neurokd: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
              "(run with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)
