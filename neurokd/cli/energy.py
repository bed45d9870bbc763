"""``neurokd energy``: energy per inference of a student (and of a deployed run) vs its ANN."""

from __future__ import annotations

import click

from .options import (
    data_options,
    load_source,
    output_option,
    quiet_option,
    samples_option,
    source_options,
)


@click.group()
def energy() -> None:
    """Energy per inference: SOPs, MACs and spikes counted on real inputs, priced per chip."""


@energy.command("report")
@source_options
@data_options
@samples_option
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="samples per forward pass while counting (memory, not results)")
@click.option("--profile", default="45nm-fp32", show_default=True,
              help="45nm-fp32, 45nm-int8, loihi, or a TOML file (see `neurokd energy profiles`)")
@click.option("--ann", type=click.Choice(["teacher", "twin", "none"]),
              help="ANN reference counted in MACs (default: the teacher, when there is one)")
@click.option("--from-sim", "--from-lava", "spike_counts", type=click.Path(dir_okay=False),
              help="RESULT.npz of `neurokd simulate --save`: price the deployed run's spike "
              "counts (--from-lava is the older name)")
@output_option("--json", "json_path", "write every number of the table to this JSON file")
@output_option("--plot", "plot_path", "write per-layer energy and firing-rate bars to this PNG")
@quiet_option
def energy_report(checkpoint, model_spec, weights, input_shape, timesteps, dataset, data_dir,
                  random_inputs, samples, batch_size, profile, ann, spike_counts, json_path,
                  plot_path, quiet) -> None:
    """Per-layer SOPs, MACs, neuron updates and energy of a student versus its ANN."""
    from ..energy.estimation import estimate_from_options
    from ..energy.render import print_report, write_plot, write_report_json
    from ..fileio import check_writable
    from ..progress import make_reporter

    for output in (json_path, plot_path):  # refused before any counting, not after it
        if output:
            check_writable(output)
    source = None
    if checkpoint or model_spec or not spike_counts:
        source = load_source(checkpoint, model_spec, weights, input_shape, timesteps)
    with make_reporter(quiet) as reporter:
        result = estimate_from_options(source, profile, ann, dataset, data_dir, samples,
                                       batch_size, spike_counts, reporter,
                                       random_inputs=random_inputs)
    print_report(result)
    if json_path:
        write_report_json(result, json_path)
    if plot_path:
        write_plot(result, plot_path)


@energy.command("profiles")
def energy_profiles() -> None:
    """List the built-in energy profiles (pJ per operation) and their sources."""
    from ..energy.render import print_profiles

    print_profiles()
