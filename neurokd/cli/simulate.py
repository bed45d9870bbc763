"""``neurokd simulate``: run an export on a test split in a simulator backend."""

from __future__ import annotations

from pathlib import Path

import click

from .options import data_options, exit_options, output_option, quiet_option, samples_option


class _Backends(click.Choice):
    """``--backend`` choices from the backend registry."""

    def __init__(self) -> None:
        from ..exporters.simulation import BACKENDS

        super().__init__(list(BACKENDS))


def _backend_help() -> str:
    from ..exporters.simulation import BACKENDS

    return "; ".join(f"{b.name}: {b.summary} ({b.suffix})" for b in BACKENDS.values()) + \
        " [default: from the file's suffix]"


def _missing_export(path: Path, backend) -> str:
    """The error for an export that is not there, naming the command that writes it: from the
    checkpoint beside it when the name is the one ``neurokd export`` gives by default
    (runs/demo/student.spikes.onnx <- runs/demo/student.pt), else with -o."""
    made_by = " ".join(backend.made_by)
    default = "student.spikes" if "--spikes" in backend.made_by else "student"
    if path.name == f"{default}{backend.suffix}":
        command = f"neurokd export {made_by} {path.parent / 'student.pt'}"
    else:
        command = f"neurokd export {made_by} CHECKPOINT -o {path}"
    return f"no such export file: {path} (make it with: {command})"


def _without_random(command):
    return data_options(command, random=False)


@click.command()  # its one line: COMMANDS in neurokd/cli/__init__.py
@click.argument("export_path", metavar="EXPORT", type=click.Path(dir_okay=False))
@click.option("--backend", type=_Backends(), default=None, help=_backend_help())
@_without_random
@samples_option
@output_option("--json", "json_path",
               "write the accuracies, agreement and spike counts to this JSON file")
@output_option("--save", "save_path",
               "write per-layer event counts to RESULT.npz (for energy report --from-sim; "
               "with an exit, also the counts up to each sample's exit step)")
@exit_options("report the accuracy and mean timesteps of stopping each sample at its exit "
              "step", "the exit the export records, if any",
              "report no exit even when the export records one")
@quiet_option
def simulate(export_path, backend, dataset, data_dir, samples, json_path, save_path,
             exit_rule, exit_threshold, no_exit, quiet) -> None:
    """Run an export on a test split: Lava (vs the float and integer models) or ONNX Runtime.

    \b
    Examples:
      neurokd simulate runs/demo/student.net                  # Lava, the export's data set
      neurokd simulate runs/demo/student.net --samples 50 --json sim.json --save sim.npz
      neurokd simulate runs/demo/student.spikes.onnx          # ONNX Runtime (--spikes export)
      neurokd simulate runs/demo/student.net --exit-rule margin --exit-threshold 0.5 --save r.npz
    """
    from ..errors import NeuroKDError
    from ..exporters.simulation import backend_for, check_exit_options, write_result
    from ..exporters.simulation import simulate as run_simulation
    from ..files.safe_io import check_writable, write_json
    from ..runtime.progress import make_reporter
    from .console import print_simulation

    check_exit_options(exit_rule, exit_threshold, no_exit)  # refused before anything runs
    if not Path(export_path).exists():  # the usual first stumble: the export was never made
        raise NeuroKDError(_missing_export(Path(export_path), backend_for(export_path, backend)))
    for output in (json_path, save_path):  # refused before the run, not after it
        if output:
            check_writable(output, reads=(export_path,))
    with make_reporter(quiet) as reporter:
        result = run_simulation(export_path, backend, dataset, samples, reporter,
                                data_dir=data_dir, exit_rule=exit_rule,
                                exit_threshold=exit_threshold, no_exit=no_exit)
    print_simulation(result)
    if json_path:
        write_json(json_path, result.to_json())
    if save_path:
        write_result(save_path, result)
