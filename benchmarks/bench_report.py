"""Markdown, JSON and PNG for benchmarks/compare_methods.py (kept apart to stay readable)."""

from __future__ import annotations

import json
from pathlib import Path

from neurokd.cli.figure import pyplot, write_png
from neurokd.files.safe_io import write_json, write_text
from neurokd.text import pct

TITLES = {"methods": "Methods",
          "features": "Feature and hybrid KD (feature weight 1)",
          "ablation": "Ablation: where temporal separation applies",
          "lam": "Entropy weight λ (tser)", "tau": "Temperature τ",
          "variants": "TSER variants: CE at τ (--ce-tau τ), entropy at 1 (--entropy-tau 1)",
          "timesteps": "Timesteps T"}


def points(value: float) -> str:
    """A fraction in percentage points, without the sign (the tables' headers say it)."""
    return pct(value, sign=False)


def _row(label: str, row: dict) -> str:
    gap = f"{100 * row['gap_closed']:.0f}%" if "gap_closed" in row else "—"
    return (f"| {label} | {points(row['mean'])} ± {points(row['std'])} | "
            f"{points(row['val_mean'])} | {gap} | {row['firing_rate']:.3f} | {' '.join(points(r) for r in row['runs'])} |")


def markdown(result: dict) -> str:
    s = result["settings"]
    setting = result.get("setting", {"name": "memorised"})
    share = s.get("train_fraction", 1.0)
    lines = [
        f"# {result['dataset']} ({setting['name']} teacher): ce vs kd vs tser, feature and "
        "hybrid KD", "",
        *([f"Setting: {setting['summary']}.", ""] if "summary" in setting else []),
        f"Teacher ({s['teacher_arch']}{', --augment' if s.get('teacher_augment') else ''}) "
        f"test accuracy: **{points(result['teacher_accuracy'])}%**"
        + ("; on the training split "
           f"{points(result['teacher_fit']['train_accuracy'])}% right, "
           f"mean p(label) {result['teacher_fit']['train_p_label']:.3f} at τ=1"
           if "teacher_fit" in result else "") + ". "
        f"Student `{s['student']}`{f' on {100 * share:g}% of the training split' if share < 1 else ''}, "
        f"T={s['timesteps']}, α={s['alpha']}, τ={s['tau']}, "
        f"λ={s['lam']}, {s['epochs']} epochs, Adam lr {s['lr']}, batch {s['batch_size']}; "
        f"seeds {result['seeds']}. Test accuracy in % (mean ± sample std over seeds); "
        "`val` is the validation split used to choose settings; `gap closed` is "
        "(method − ce) / (teacher − ce).", "",
    ]
    for group in s["groups"]:
        rows = result[group]
        lines += [f"## {TITLES.get(group, group)}", "",
                  "| row | test | val | gap closed | firing rate | runs |",
                  "|---|---|---|---|---|---|"]
        lines += [_row(label, row) for label, row in rows.items()]
        lines.append("")
        if group in ("lam", "tau", "variants"):
            best = max(rows, key=lambda k: rows[k]["val_mean"])
            lines += [f"Best on validation: **{best}**.", ""]
    lines += ["## Paired comparison over seeds", "",
              "| comparison | mean difference (pts) | seeds won | t | p |", "|---|---|---|---|---|"]
    for name, test in result["significance"].items():
        t = f"{test['t']:.2f}" if "t" in test else "—"
        p = f"{test['p']:.3f}" if "p" in test else "—"
        lines.append(f"| {name.replace('_vs_', ' vs ')} | {100 * test['mean_diff']:+.2f} | "
                     f"{test['wins']}/{test['n']} | {t} | {p} |")
    lines += ["", *_invocations(result["invocations"])]
    return "\n".join(lines)


def _rows_text(rows: list[str]) -> str:
    """'methods/ce', 'methods/kd', 'lam/lam=0' -> 'methods: ce, kd; lam: lam=0'."""
    by_group: dict[str, list[str]] = {}
    for row in rows:
        group, label = row.split("/", 1)
        by_group.setdefault(group, []).append(label)
    return "; ".join(f"{g}: {', '.join(labels)}" for g, labels in by_group.items())


def _invocations(invocations: list[dict]) -> list[str]:
    """Which command produced which rows, and what it cost on this machine."""
    lines = ["## Commands that produced these rows", "",
             "A row appears in several groups when its settings coincide (e.g. tser is also "
             "lam=0.05, tau=1, T=4); it was trained once. Training time is the sum of the "
             "distinct runs' wall times; wall time is the whole invocation (teacher and "
             "evaluation included).", "",
             "| # | command | rows | distinct runs | training (min) | wall time (min) | code, "
             "threads | finished |", "|---|---|---|---|---|---|---|---|"]
    for i, inv in enumerate(invocations, 1):
        lines.append(f"| {i} | `{inv['command']}` | {_rows_text(inv['rows'])} | "
                     f"{inv['distinct_runs']} | {inv['training_time_s'] / 60:.1f} | "
                     f"{inv['wall_time_s'] / 60:.1f} | {inv.get('code', '—')}, "
                     f"{inv.get('threads', '—')} | {inv.get('finished', '—')} |")
    lines.append("")
    lines += [f"Note on #{i}: {inv['note']}" for i, inv in enumerate(invocations, 1)
              if inv.get("note")]
    return lines + [""]


def plot(result: dict, path: Path) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6), width_ratios=(2, 1, 1))
    # The features group reruns ce/kd/tser with its own code; label them apart.
    methods = result.get("methods", {})  # a file of sweeps alone has no method rows
    features = {(f"{k} (feat. run)" if k in methods else k): v
                for k, v in result.get("features", {}).items()}
    bars = {**methods, **result.get("ablation", {}), **features}
    colours = (["tab:blue"] * len(methods) + ["tab:gray"] * len(result.get("ablation", {}))
               + ["tab:green"] * len(features))
    if bars:
        axes[0].bar(list(bars), [100 * r["mean"] for r in bars.values()],
                    yerr=[100 * r["std"] for r in bars.values()], capsize=4, color=colours)
        low = min(100 * (r["mean"] - r["std"]) for r in bars.values())
        axes[0].set_ylim(low - 2, 100 * result["teacher_accuracy"] + 1)
        axes[0].tick_params(axis="x", rotation=60)
    axes[0].axhline(100 * result["teacher_accuracy"], color="k", ls="--", label="teacher")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_title("methods (blue), ablation (grey), feature-KD runs (green)")
    axes[0].legend()
    for group, ax, key in (("tau", axes[1], "tau="), ("timesteps", axes[2], "T=")):
        for method in ("kd", "tser"):
            rows = {k: v for k, v in result.get(group, {}).items() if k.startswith(method + " ")}
            if rows:
                xs = [float(k.split(key)[1]) for k in rows]
                ax.errorbar(xs, [100 * r["mean"] for r in rows.values()],
                            yerr=[100 * r["std"] for r in rows.values()], marker="o",
                            capsize=3, label=method)
        ax.set_xlabel(key.rstrip("="))
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(TITLES[group])
        if ax.lines:  # a group this invocation did not run leaves its panel empty
            ax.legend()
    fig.tight_layout()
    write_png(fig, path, dpi=110)


def write_outputs(result: dict, folder: Path, stem: str | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / (stem or result["dataset"])
    paths = [write_json(stem.with_suffix(".json"), result),
             write_text(stem.with_suffix(".md"), markdown(result))]
    plot(result, stem.with_suffix(".png"))
    paths.append(stem.with_suffix(".png"))
    json.loads(paths[0].read_text())  # the JSON just written must parse
    return paths
