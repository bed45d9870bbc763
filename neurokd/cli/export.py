"""``neurokd export``: write the student in a target's format, checked against PyTorch first."""

from __future__ import annotations

from pathlib import Path

import click

from .options import (
    data_options,
    load_source,
    output_option,
    quiet_option,
    random_weights_option,
    source_options,
)

# Target-only keyword options of the exporters and the flags that set them; which target
# takes which comes from the registry (Exporter.options).
FLAGS = {"teacher": "--teacher", "spike_outputs": "--spikes", "lava_samples": "--lava-samples",
         "check_consumers": "--check-consumers", "stepwise": "--stepwise"}


def _targets() -> dict:
    from ..exporters.registry import EXPORTERS

    return EXPORTERS


def _only(option: str) -> str:
    """``(onnx)``: the targets whose exporter takes ``option``, for its help text."""
    return "(" + " / ".join(n for n, e in _targets().items() if option in e.options) + ")"


class _Targets(click.Choice):
    """``--target`` choices from the exporter registry, read when the command is built."""

    def __init__(self) -> None:
        super().__init__(list(_targets()))


@click.command()  # its one line: COMMANDS in neurokd/cli/__init__.py
@source_options
@click.option("--target", required=True, type=_Targets(), help="; ".join(
    f"{e.name}: {e.summary} ({e.suffix})" for e in _targets().values()))
@output_option("-o", "--output", "output file (default: beside the checkpoint, named after the "
               "target)")
@click.option("--teacher", "export_teacher", is_flag=True,
              help=f"export the ANN teacher instead of the student {_only('teacher')}")
@click.option("--spikes", is_flag=True,
              help=f"also output every neuron layer's spikes {_only('spike_outputs')}")
@click.option("--stepwise", is_flag=True,
              help="one timestep per call: input x and the neurons' states, output that "
              "step's logits and the new states, for streaming and early exit "
              f"(docs/anytime.md) {_only('stepwise')}")
@random_weights_option("export")
@click.option("--check-samples", type=click.IntRange(min=1), default=512, show_default=True,
              help="test samples the written file is checked on")
@click.option("--lava-samples", type=click.IntRange(min=0), default=None,
              help="of those, run this many in Lava (.venv-lava) and require its spikes to "
              f"equal the integer model's; 0 skips [default: 32] {_only('lava_samples')}")
@click.option("--no-lava-check", is_flag=True,
              help="export without the Lava check (same as --lava-samples 0); without it, a "
              f"missing .venv-lava is an error (exit 1), never a silent skip "
              f"{_only('lava_samples')}")
@click.option("--check-consumers", is_flag=True,
              help="then run the written file in every installed NIR consumer (snnTorch, "
              "Norse, spikingjelly, Sinabs, Rockpool) and report how each agrees "
              f"{_only('check_consumers')}")
@data_options
@quiet_option
def export(checkpoint, model_spec, weights, input_shape, timesteps, target, output,
           export_teacher, spikes, stepwise, random_weights, check_samples, lava_samples,
           no_lava_check, check_consumers, dataset, data_dir, random_inputs, quiet) -> None:
    """Write the student in a target's file format, checked against PyTorch first.

    \b
    Examples:
      neurokd export --target onnx runs/demo/student.pt      # -> runs/demo/student.onnx
      neurokd export --target nir runs/demo/student.pt -o student.nir
      neurokd export --target loihi runs/demo/student.pt     # checked in Lava too
      neurokd export --target onnx --stepwise runs/demo/student.pt  # -> student.step.onnx
      neurokd export --target onnx --model mypkg.nets:build --weights w.pt \\
          --input-shape 1,8,8 --timesteps 4 --dataset digits
    """
    from ..errors import ToolMissing
    from ..files.safe_io import check_writable
    from ..runtime.progress import make_reporter
    from .console import print_lines

    chosen = _targets()[target]
    if no_lava_check:
        if "lava_samples" not in chosen.options:
            raise click.UsageError("--no-lava-check works with --target loihi only")
        if lava_samples:
            raise click.UsageError("--no-lava-check and --lava-samples "
                                   f"{lava_samples} contradict each other")
        lava_samples = 0
    given = {"teacher": export_teacher or None, "spike_outputs": spikes or None,
             "lava_samples": lava_samples, "check_consumers": check_consumers or None,
             "stepwise": stepwise or None}
    for key, value in given.items():
        if value is not None and key not in chosen.options:
            takers = [name for name, e in _targets().items() if key in e.options]
            raise click.UsageError(f"{FLAGS[key]} works with --target {' / '.join(takers)} only")
    source = load_source(checkpoint, model_spec, weights, input_shape, timesteps,
                         random_weights)
    path = check_writable(output or _default_output(checkpoint, source, chosen, export_teacher,
                                                    spikes, stepwise),
                          reads=(checkpoint, weights))
    options = {k: v for k, v in given.items() if v is not None}
    with make_reporter(quiet) as reporter:
        if "reporter" in chosen.options:
            options["reporter"] = reporter
        try:
            result = chosen.export(source, path, max_samples=check_samples, dataset=dataset,
                                   data_dir=data_dir, random_inputs=random_inputs, **options)
        except ToolMissing as exc:  # the library's wording names its keyword; here the flags
            raise ToolMissing(str(exc).replace("lava_samples=0", "--no-lava-check")) from None
    print_lines(result.summary_lines())


def _default_output(checkpoint, source, chosen, teacher: bool, spikes: bool = False,
                    stepwise: bool = False) -> str:
    """Beside the checkpoint, named after what is in the file: ``student.onnx``,
    ``teacher.onnx``, ``student.spikes.onnx`` (with the spike outputs: a different file, so
    one export never silently replaces the other), ``student.step.onnx`` (``--stepwise``)."""
    folder = Path(checkpoint).parent if checkpoint else Path(".")
    stem = "teacher" if teacher else source.label
    stem = f"{stem}.step" if stepwise else stem
    path = chosen.default_path(folder, f"{stem}.spikes" if spikes else stem)
    if checkpoint and path.resolve() == Path(checkpoint).resolve():  # a .nir source to NIR
        raise click.UsageError(f"the default output {path} is the source itself; give -o")
    return str(path)
