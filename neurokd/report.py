"""Rich tables the CLI prints (kept apart so the library itself prints nothing)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def print_distill_summary(result) -> None:
    m = result.metrics
    table = Table(title=f"neurokd distill · {result.config.run_name}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("teacher accuracy (test)", _pct(m["teacher_accuracy"]))
    table.add_row(f"student accuracy (test, {m['method']}, T={m['timesteps']})",
                  _pct(m["student_accuracy"]))
    table.add_row("mean firing rate", "—" if m["firing_rate"] is None else f"{m['firing_rate']:.4f}")
    params = f"{m['student_parameters']:,}"
    if m.get("teacher_parameters"):
        params += f" / {m['teacher_parameters']:,}"
    table.add_row("parameters (student / teacher)", params)
    table.add_row("epochs (best on validation)", f"{m['epochs']} ({m['best_epoch']})")
    table.add_row("wall time", f"{m['wall_time_s']:.1f} s")
    table.add_row("checkpoint", str(result.checkpoint))
    Console().print(table)


def _plain() -> Console:
    # File names and shapes hold brackets: no rich markup, no wrapping of long lines.
    return Console(markup=False, highlight=False, soft_wrap=True)


def _agreement_line(agreement, consumer: str, verified_on: str) -> str:
    spikes = ""
    if agreement.spikes_checked:
        spikes = ("spikes identical" if agreement.spike_mismatches == 0
                  else f"{agreement.spike_mismatches} spike mismatches")
        spikes += f" ({agreement.spikes_checked:,} checked), "
    return (f"  {consumer} on {verified_on}: max |Δlogit| "
            f"{agreement.max_abs_logit_error:.1e}, {spikes}argmax "
            f"{100 * agreement.argmax_agreement:.2f}%")


def print_onnx_export(result) -> None:
    console = _plain()
    shape = ",".join(str(d) for d in result.input_shape)
    out = ",".join(str(d) for d in result.output_shape)
    steps = f", T={result.timesteps}" if result.timesteps else ""
    console.print(f"wrote {result.path} ({result.file_bytes / 1024:.0f} kB): {result.model}"
                  f"{steps}, input [{shape}] -> logits [{out}]")
    console.print(f"  {result.exporter}, opset {result.opset}, standard ops only: "
                  + " ".join(sorted(result.ops)))
    console.print(_agreement_line(result.agreement, "onnxruntime", result.verified_on))


def print_nir_export(result) -> None:
    console = _plain()
    kinds: dict[str, int] = {}
    for kind in result.nodes.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    summary = ", ".join(f"{k} x{n}" for k, n in kinds.items())
    console.print(f"wrote {result.path}: {len(result.nodes)} nodes ({summary}), {result.edges} "
                  f"edges, dt {result.dt:g} s, T={result.timesteps}")
    if result.folded_batchnorm:
        console.print("  BatchNorm folded: " + ", ".join(result.folded_batchnorm))
    console.print(_agreement_line(result.agreement, "nir.read + re-simulation",
                                  result.verified_on))


def print_loihi_export(result) -> None:
    """What was written, the per-layer quantization, and how the integer network agrees."""
    # the table has 9 columns: never squeeze it below 120 characters (logs, pipes)
    console = Console(markup=False, highlight=False, soft_wrap=True,
                      width=max(Console().width, 120))
    shape = ",".join(str(d) for d in result.input_shape)
    console.print(f"wrote {result.path} ({result.file_bytes / 1024:.0f} kB): lava-dl netx HDF5, "
                  f"T={result.timesteps}, input [{shape}] as {result.encoding} "
                  f"(x * {result.input_scale:.4g}, rounded)")
    table = Table(title="quantization (8-bit weights, one scale per layer)", title_justify="left")
    for column in ("layer", "type", "scale", "float weights", "int weights", "clipped",
                   "vThMant", "vDecay", "scale set by"):
        table.add_column(column, justify="left" if column in ("layer", "type", "scale set by")
                         else "right")
    for layer in result.layers:
        r = layer.report
        table.add_row(layer.name, layer.kind + ("" if layer.spiking else " (readout)"),
                      f"{layer.scale:.4g}", f"[{r['weight_range'][0]:.3g}, {r['weight_range'][1]:.3g}]",
                      f"[{r['int_range'][0]}, {r['int_range'][1]}]", _pct(r["clipped"]),
                      "—" if r["threshold_mant"] is None else str(r["threshold_mant"]),
                      str(layer.neuron.v_decay), r["limit"])
    console.print(table)
    if result.folded_pools:
        console.print("  average pools folded into the next layer: "
                      + ", ".join(result.folded_pools))
    rates = ", ".join(f"{name} {100 * share:.2f}%" for name, share in
                      result.spike_agreement.items())
    console.print(f"  Loihi fixed-point model vs float on {result.verified_on}: argmax "
                  f"{100 * result.argmax_agreement:.2f}%; identical spikes: {rates}")
    if result.float_accuracy is not None:
        drop = 100 * (result.float_accuracy - result.quantized_accuracy)
        console.print(f"  accuracy: float {_pct(result.float_accuracy)}, 8-bit fixed point "
                      f"{_pct(result.quantized_accuracy)} (drop {drop:.2f} pt)")
    console.print(f"  input range calibrated on the {result.calibrated_on}")
    clipped_bias = [f"{lay.name} {_pct(lay.report['bias_clipped'])}" for lay in result.layers
                    if lay.report.get("bias_clipped")]
    if clipped_bias:
        console.print("  warning: biases clipped to 13 bits in " + ", ".join(clipped_bias))
    if result.saturated:
        console.print(f"  warning: {result.saturated:,} membrane values hit Loihi's 24-bit "
                      f"limit on the check inputs and were clipped (the float student has none)")
    if result.lava_skipped:
        console.print(f"  not run in Lava: {result.lava_skipped}")
    else:
        console.print(f"  Lava (lava-dl netx, fixed_pt) on {result.lava_samples} samples: "
                      "spikes and readout identical to the integer model")


def print_simulation(result) -> None:
    """Accuracies of the backend, the float and the integer model, and their agreement."""
    console = _plain()
    console.print(f"{result.backend} on {result.dataset} test split ({result.samples} samples, "
                  f"T={result.timesteps}): {result.seconds_per_sample * 1000:.1f} ms per sample")
    if result.agreement is None:  # onnx: the file is the float network
        console.print(f"  accuracy: {_pct(result.lava_accuracy)}")
    else:
        console.print(f"  accuracy: {result.backend} {_pct(result.lava_accuracy)}, float "
                      f"(PyTorch) {_pct(result.torch_accuracy)}, integer model "
                      f"{_pct(result.quantized_accuracy)}")
        console.print(f"  {result.backend} vs bit-accurate integer model: argmax "
                      f"{_pct(result.agreement)}")
    for name, count in result.spike_counts.items():
        share = result.identical_spikes.get(name)
        same = "" if share is None else f"{_pct(share)} identical spikes, "
        console.print(f"  {name}: {same}{count:,} spikes")
