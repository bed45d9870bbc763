"""``neurokd energy report``: energy per inference of a student (and of a deployed run) vs
its ANN. Apart from ``energy.py`` so that ``neurokd energy profiles`` loads none of this."""

from __future__ import annotations

import click

from ..energy.profiles import BUILTIN as PROFILES
from ..energy.quantities import ENERGY_MODELS
from .options import (
    data_options,
    exit_options,
    load_source,
    output_option,
    quiet_option,
    random_weights_option,
    samples_option,
    source_options,
)


@click.command("report")  # its one line: ENERGY_COMMANDS in energy.py
@source_options
@data_options
@samples_option
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="samples per forward pass while counting (memory, not results)")
@click.option("--profile", default="45nm-fp32", show_default=True,
              help=f"{', '.join(PROFILES)}, or a TOML file (see `neurokd energy profiles`)")
@click.option("--energy-model", type=click.Choice(list(ENERGY_MODELS)), default="compute",
              show_default=True, help="; ".join(f"{m.name}: {m.description}"
                                                 for m in ENERGY_MODELS.values()))
@click.option("--ann", type=click.Choice(["teacher", "twin", "none"]),
              help="ANN reference counted in MACs (default: the teacher, when there is one)")
@click.option("--neurobench", is_flag=True,
              help="add NeuroBench's metrics (Footprint, ConnectionSparsity, "
              "ActivationSparsity, SynapticOperations) to the report and the JSON")
@click.option("--from-sim", "--from-lava", "spike_counts", type=click.Path(dir_okay=False),
              help="RESULT.npz of `neurokd simulate --save`: price the deployed run's spike "
              "counts (--from-lava is the older name)")
@exit_options("price each sample only up to its exit step",
              "the exit the run (or the --from-sim file) recorded, if any",
              "price all T timesteps even when the run recorded an exit")
@random_weights_option("count and price")
@output_option("--json", "json_path", "write every number of the table to this JSON file")
@output_option("--plot", "plot_path", "write this PNG: per-layer energy bars of the SNN and "
               "the ANN (log scale, each labelled; by part), and input vs break-even rates")
@quiet_option
def energy_report(checkpoint, model_spec, weights, input_shape, timesteps, dataset, data_dir,
                  random_inputs, samples, batch_size, profile, energy_model, ann, neurobench,
                  spike_counts, exit_rule, exit_threshold, no_exit, random_weights,
                  json_path, plot_path, quiet) -> None:
    """Per-layer SOPs, MACs, neuron updates and energy of a student versus its ANN, with
    the input spike rate at which each layer breaks even.

    \b
    Examples:
      neurokd energy report runs/demo/student.pt                   # 45nm-fp32, vs the teacher
      neurokd energy report runs/demo/student.pt --profile loihi --ann twin --plot e.png
      neurokd energy report runs/demo/student.pt --energy-model memory --json e.json
      neurokd energy report runs/demo/student.pt --from-sim r.npz  # + a simulate --save run
      neurokd energy report runs/demo/student.pt --exit-rule margin --exit-threshold 0.5
      neurokd energy report --model mypkg.nets:build --weights w.pt --input-shape 1,8,8 \\
          --timesteps 4 --dataset digits
    """
    from ..energy.estimation import estimate_from_options
    from ..files.safe_io import check_writable
    from ..runtime.progress import make_reporter
    from .energy_render import print_report, write_plot, write_report_json

    if exit_rule is not None or exit_threshold is not None:  # refused before any loading
        from ..energy.estimation import exit_choice

        exit_choice(None, exit_rule, exit_threshold, no_exit)
    for output in (json_path, plot_path):  # refused before any counting, not after it
        if output:
            check_writable(output, reads=(checkpoint, weights, spike_counts, profile))
    source = None
    if checkpoint or model_spec or not spike_counts:
        source = load_source(checkpoint, model_spec, weights, input_shape, timesteps,
                             random_weights)
    with make_reporter(quiet) as reporter:
        result = estimate_from_options(source, profile, ann, dataset, data_dir, samples,
                                       batch_size, spike_counts, reporter,
                                       random_inputs=random_inputs, energy_model=energy_model,
                                       neurobench=neurobench, exit_rule=exit_rule,
                                       exit_threshold=exit_threshold, no_exit=no_exit)
    print_report(result)
    if json_path:
        write_report_json(result, json_path)
    if plot_path:
        write_plot(result, plot_path)
