"""The analysis, Markdown and JSON of benchmarks/anytime.py (kept apart to stay readable).

``analyse`` reads every run the grid trained (metrics.json: the test accuracy after each
timestep and the calibrated exit), counts each student's events on the test split once with
its exit and once at full T (``neurokd.energy.count.count_events_with_exit``), prices both under
each profile, tests tser − kd at every t (paired over seeds), and times the issue's figures.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neurokd.files.safe_io import write_json, write_text

# Figures of issue 25 (measured here, never in tests).
EXIT_EVAL_MAX = 1.1        # evaluation with an exit rule / a plain evaluation pass
STEPWISE_MAX = 1.5         # stepwise ONNX stepped T times / the unrolled ONNX, batch 1
TSER_STEPS_MAX = 2.0       # digits, tser, --exit-drop 0.5: mean timesteps (of 4)
TSER_ENERGY_MAX = 0.6      # ... and energy with the exit / at full T
PROFILES = ("loihi", "45nm-fp32")


def _mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "runs": values}


def _test_data(config: dict):
    from neurokd.data import load_run_data, make_loader

    data = load_run_data({**config, "augment": False})
    return make_loader(data.test, 256)


def _energy(run: Path, exit: dict, profiles: tuple[str, ...], samples: int | None) -> dict:
    """pJ per inference with the run's exit and at full T, per profile (compute model)."""
    from neurokd.energy.count import count_events_with_exit, eval_mode
    from neurokd.energy.pricing import price
    from neurokd.student.loading import load

    loaded = load(run / "student.pt")
    loader = _test_data(loaded.config)
    batches = list(loader) if samples is None else [
        (x[:samples], y[:samples]) for x, y in [next(iter(loader))]]
    with eval_mode(loaded.student):
        both = count_events_with_exit(loaded.student, batches, exit["rule"], exit["threshold"],
                                      tuple(loaded.config["input_shape"]))
    out = {"mean_timesteps": float(both.steps.double().mean())}
    for profile in profiles:
        exited = sum(layer.energy_pj for layer in price(both.exited, profile, "compute"))
        full = sum(layer.energy_pj for layer in price(both.full, profile, "compute"))
        out[profile] = {"exit_pj": exited, "full_pj": full, "ratio": exited / full}
    return out


def _paired(a: list[float], b: list[float]) -> dict:
    """a − b paired over seeds: mean difference, paired t-test and Wilcoxon p-values."""
    from scipy import stats

    diff = [x - y for x, y in zip(a, b, strict=True)]
    same = all(d == 0 for d in diff)
    t_p = None if same else float(stats.ttest_rel(a, b).pvalue)
    w_p = None if same else float(stats.wilcoxon(a, b, zero_method="zsplit").pvalue)
    return {"mean_diff": statistics.fmean(diff), "t_test_p": t_p, "wilcoxon_p": w_p,
            "wins": sum(d > 0 for d in diff), "losses": sum(d < 0 for d in diff)}


def analyse(args, base: dict, runs: dict[str, list[Path]], teacher_accuracy: float) -> dict:
    rows = {}
    for method, folders in runs.items():
        metrics = [json.loads((f / "metrics.json").read_text()) for f in folders]
        curves = np.array([m["accuracy_by_timestep"] for m in metrics])  # [seeds, T]
        alone = np.array([m["accuracy_at_timestep"] for m in metrics])   # step t by itself
        exits = [m["exit"] for m in metrics]
        energy = [_energy(f, m["exit"], PROFILES, args.energy_samples)
                  for f, m in zip(folders, metrics, strict=True)]
        print(f"  {method}: energy counted on {len(folders)} runs", flush=True)
        rows[method] = {
            "accuracy_by_timestep": [_mean_std(curves[:, t].tolist())
                                     for t in range(curves.shape[1])],
            "accuracy_at_timestep": [_mean_std(alone[:, t].tolist())
                                     for t in range(alone.shape[1])],
            "train_s": [m["wall_time_s"] for m in metrics],
            "exit_accuracy": _mean_std([e["test_accuracy"] for e in exits]),
            "exit_mean_timesteps": _mean_std([e["mean_timesteps"] for e in exits]),
            "oracle_mean_timesteps": _mean_std([e["oracle_mean_timesteps"] for e in exits]),
            "thresholds": [e["threshold"] for e in exits],
            "energy": {p: {"exit_pj": _mean_std([e[p]["exit_pj"] for e in energy]),
                           "full_pj": _mean_std([e[p]["full_pj"] for e in energy]),
                           "ratio": _mean_std([e[p]["ratio"] for e in energy])}
                       for p in PROFILES},
            "run_keys": [f.name for f in folders]}
    result = {"dataset": args.dataset, "setting": args.setting, "seeds": args.seeds,
              "teacher_accuracy": teacher_accuracy,
              "settings": {k: v for k, v in base.items() if k != "data_dir"},
              "exit": {"rule": args.exit_rule, "drop_points": args.exit_drop},
              "profiles": list(PROFILES), "methods": rows}
    if "tser" in rows and "kd" in rows:
        steps = len(rows["tser"]["accuracy_by_timestep"])
        result["tser_minus_kd"] = {
            "accuracy_by_timestep": [_paired(rows["tser"]["accuracy_by_timestep"][t]["runs"],
                                             rows["kd"]["accuracy_by_timestep"][t]["runs"])
                                     for t in range(steps)],
            "exit_accuracy": _paired(rows["tser"]["exit_accuracy"]["runs"],
                                     rows["kd"]["exit_accuracy"]["runs"]),
            "exit_mean_timesteps": _paired(rows["tser"]["exit_mean_timesteps"]["runs"],
                                           rows["kd"]["exit_mean_timesteps"]["runs"])}
    result["figures"] = figures(args, runs, rows)
    return result


def _best_times(first, second, repeats: int = 7) -> tuple[float, float]:
    """The fastest of ``repeats`` runs of each, taken in turn (first, second, first, ...): on a
    shared machine the load drifts, and alternating exposes both to the same drift."""
    first(), second()  # warm-up: first-call allocations and lazy imports
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, kept in ((first, times[0]), (second, times[1])):
            started = time.perf_counter()
            fn()
            kept.append(time.perf_counter() - started)
    return min(times[0]), min(times[1])


def figures(args, runs: dict[str, list[Path]], rows: dict) -> dict:
    """The issue's figures on the first tser run (or the first method's)."""
    from neurokd.anytime import accuracy_by_timestep, apply_rule
    from neurokd.student.loading import load
    from neurokd.train.evaluation import predict, timestep_logits

    method = "tser" if "tser" in runs else next(iter(runs))
    run = runs[method][0]
    loaded = load(run / "student.pt")
    student = loaded.student.eval()
    exit = json.loads((run / "metrics.json").read_text())["exit"]
    batches = list(_test_data(loaded.config))

    @torch.no_grad()
    def plain():
        correct = 0
        for x, y in batches:
            correct += int((predict(student, x).argmax(-1) == y).sum())
        return correct

    @torch.no_grad()
    def with_exit():
        logits, labels = [], []
        for x, y in batches:
            logits.append(timestep_logits(student, x))
            labels.append(y)
        logits, labels = torch.cat(logits, 1), torch.cat(labels)
        accuracy_by_timestep(logits, labels)
        return apply_rule(exit["rule"], logits, exit["threshold"]).accuracy(labels)

    plain_s, exit_s = _best_times(plain, with_exit)
    out = {"run": run.name,
           "exit_evaluation": {"plain_s": plain_s, "with_exit_s": exit_s,
                               "ratio": exit_s / plain_s, "target": EXIT_EVAL_MAX,
                               "met": exit_s / plain_s <= EXIT_EVAL_MAX}}
    out["stepwise_onnx"] = _stepwise_timing(run, loaded, batches)
    if method == "tser":
        tser = rows["tser"]
        steps = tser["exit_mean_timesteps"]["mean"]
        energy = {p: tser["energy"][p]["ratio"]["mean"] for p in PROFILES}
        out["tser_exit"] = {"mean_timesteps": steps, "steps_target": TSER_STEPS_MAX,
                            "steps_met": steps <= TSER_STEPS_MAX, "energy_ratio": energy,
                            "energy_target": TSER_ENERGY_MAX,
                            "energy_met": {p: r <= TSER_ENERGY_MAX for p, r in energy.items()}}
    return out


def _stepwise_timing(run: Path, loaded, batches, samples: int = 200) -> dict:
    """Batch 1 in ONNX Runtime: the unrolled file once vs the stepwise file T times."""
    import onnxruntime as ort

    from neurokd.exporters import export_onnx

    timesteps = int(loaded.config["timesteps"])
    x = torch.cat([b[0] for b in batches], dim=0 if batches[0][0].dim() == 4 else 1)
    static = x.dim() == 4
    with tempfile.TemporaryDirectory() as folder:
        unrolled, step = Path(folder) / "u.onnx", Path(folder) / "s.onnx"
        export_onnx(run / "student.pt", unrolled, max_samples=32, exporter="torchscript")
        export_onnx(run / "student.pt", step, max_samples=32, exporter="torchscript",
                    stepwise=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        u = ort.InferenceSession(str(unrolled), options, providers=["CPUExecutionProvider"])
        s = ort.InferenceSession(str(step), options, providers=["CPUExecutionProvider"])
    count = min(samples, x.shape[0 if static else 1])
    one = [(x[i:i + 1] if static else x[:, i:i + 1]).numpy() for i in range(count)]
    states = [(i.name, [1, *i.shape[1:]]) for i in s.get_inputs()[1:]]

    def run_unrolled():
        for sample in one:
            u.run(None, {"input": sample})

    def run_stepwise():
        for sample in one:
            feed = {name: np.zeros(shape, np.float32) for name, shape in states}
            for t in range(timesteps):
                out = s.run(None, {"x": sample if static else sample[t], **feed})
                feed = {name: value for (name, _), value in zip(states, out[1:], strict=True)}

    unrolled_s, stepwise_s = _best_times(run_unrolled, run_stepwise)
    ratio = stepwise_s / unrolled_s
    return {"samples": count, "unrolled_ms_per_sample": 1000 * unrolled_s / count,
            "stepwise_ms_per_sample": 1000 * stepwise_s / count, "ratio": ratio,
            "target": STEPWISE_MAX, "met": ratio <= STEPWISE_MAX}


def _pm(cell: dict, scale: float = 100.0, digits: int = 2) -> str:
    return f"{scale * cell['mean']:.{digits}f} ± {scale * cell['std']:.{digits}f}"


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def markdown(result: dict) -> str:
    rows, s = result["methods"], result["settings"]
    steps = len(next(iter(rows.values()))["accuracy_by_timestep"])
    lines = [f"# Any-time students on {result['dataset']} ({result['setting']} setting)", "",
             f"Teacher test accuracy {100 * result['teacher_accuracy']:.2f}%. Student `cnn`, "
             f"T={s['timesteps']}, {s['epochs']} epochs, seeds 0..{result['seeds'] - 1}; exit "
             f"rule `{result['exit']['rule']}` calibrated on the validation split with "
             f"`--exit-drop {result['exit']['drop_points']:g}` (never on test). Test split, "
             "mean ± sample std over seeds.", "",
             "## Accuracy after t timesteps (prefix mean of the logits, %)", "",
             "| method | " + " | ".join(f"t={t + 1}" for t in range(steps)) + " |",
             "|---|" + "---|" * steps]
    for method, row in rows.items():
        lines.append(f"| {method} | " + " | ".join(_pm(c) for c in row["accuracy_by_timestep"])
                     + " |")
    lines += ["", "Step t alone (its own logits, not the prefix mean, %):", "",
              "| method | " + " | ".join(f"t={t + 1}" for t in range(steps)) + " |",
              "|---|" + "---|" * steps]
    for method, row in rows.items():
        lines.append(f"| {method} | " + " | ".join(_pm(c) for c in row["accuracy_at_timestep"])
                     + " |")
    lines += ["", "## Calibrated exit and energy per inference (compute model)", "",
              "| method | exit accuracy % | mean timesteps | oracle timesteps | "
              + " | ".join(f"{p}: exit / full" for p in result["profiles"]) + " |",
              "|---|---|---|---|" + "---|" * len(result["profiles"])]
    for method, row in rows.items():
        energy = " | ".join(
            f"{row['energy'][p]['exit_pj']['mean'] / 1e3:.1f} / "
            f"{row['energy'][p]['full_pj']['mean'] / 1e3:.1f} nJ "
            f"({row['energy'][p]['ratio']['mean']:.3f}x)" for p in result["profiles"])
        lines.append(f"| {method} | {_pm(row['exit_accuracy'])} | "
                     f"{_pm(row['exit_mean_timesteps'], 1.0)} | "
                     f"{_pm(row['oracle_mean_timesteps'], 1.0)} | {energy} |")
    if "tser_minus_kd" in result:
        paired = result["tser_minus_kd"]
        lines += ["", "## tser − kd, paired over seeds", "",
                  "| quantity | mean difference | tser better / worse (seeds) | paired t p | "
                  "Wilcoxon p |", "|---|---|---|---|---|"]
        for t, cell in enumerate(paired["accuracy_by_timestep"]):
            lines.append(f"| accuracy t={t + 1} | {100 * cell['mean_diff']:+.2f} points | "
                         f"{cell['wins']} / {cell['losses']} | {_p(cell['t_test_p'])} | "
                         f"{_p(cell['wilcoxon_p'])} |")
        cell = paired["exit_accuracy"]
        lines.append(f"| exit accuracy | {100 * cell['mean_diff']:+.2f} points | "
                     f"{cell['wins']} / {cell['losses']} | {_p(cell['t_test_p'])} | "
                     f"{_p(cell['wilcoxon_p'])} |")
        cell = paired["exit_mean_timesteps"]
        lines.append(f"| exit mean timesteps | {cell['mean_diff']:+.3f} | "
                     f"{cell['wins']} / {cell['losses']} (more / fewer) | "
                     f"{_p(cell['t_test_p'])} | {_p(cell['wilcoxon_p'])} |")
    f = result.get("figures", {})
    lines += ["", "## Figures of issue 25", ""]
    if "exit_evaluation" in f:
        e = f["exit_evaluation"]
        lines.append(f"- Evaluation with an exit rule vs a plain evaluation pass ({f['run']}, "
                     f"test split): {e['with_exit_s'] * 1e3:.1f} ms vs {e['plain_s'] * 1e3:.1f} "
                     f"ms = **{e['ratio']:.2f}x** (target ≤ {e['target']}x: "
                     f"{'met' if e['met'] else 'missed'}).")
    if "stepwise_onnx" in f:
        e = f["stepwise_onnx"]
        lines.append(f"- Stepwise ONNX stepped T times at batch 1 vs the unrolled ONNX "
                     f"(ONNX Runtime, 1 thread, {e['samples']} samples): "
                     f"{e['stepwise_ms_per_sample']:.3f} vs {e['unrolled_ms_per_sample']:.3f} "
                     f"ms per sample = **{e['ratio']:.2f}x** (target ≤ {e['target']}x: "
                     f"{'met' if e['met'] else 'missed'}).")
    if "tser_exit" in f:
        e = f["tser_exit"]
        energy = ", ".join(f"{p} {r:.3f}x ({'met' if e['energy_met'][p] else 'missed'})"
                           for p, r in e["energy_ratio"].items())
        lines.append(f"- tser with `--exit-drop {result['exit']['drop_points']:g}`: mean "
                     f"**{e['mean_timesteps']:.2f}** timesteps of {s['timesteps']} (target ≤ "
                     f"{e['steps_target']:g}: {'met' if e['steps_met'] else 'missed'}); energy "
                     f"with the exit / full T: {energy} (target ≤ {e['energy_target']}x).")
    inv = result.get("invocation", {})
    if inv:
        trained = sum(sum(row["train_s"]) for row in rows.values())
        lines += ["", f"Command: `{inv['command']}` ({inv['wall_time_s']:.0f} s, "
                  f"{inv['threads']} thread(s), code {inv['code']}, {inv['finished']}); the "
                  f"{sum(len(row['train_s']) for row in rows.values())} runs trained in "
                  f"{trained / 60:.0f} min of process time (two `--train-only` processes side "
                  "by side on a shared 2-core machine), resumable: a finished run is never "
                  "trained again."]
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, folder: Path, stem: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_json(folder / f"{stem}.json", result),
            write_text(folder / f"{stem}.md", markdown(result))]
