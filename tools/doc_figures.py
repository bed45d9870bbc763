"""The measured figures that README.md, docs/results.md and docs/energy.md quote, written from
the files the benchmarks leave in benchmarks/results/ (``tools/gen_docs.py`` puts each block
between its markers; ``--check`` fails when a committed block differs).

Every figure of the demo student comes from one file, ``figures.json`` (``make figures``: a
fresh demo distill, its energy under every profile and energy model, its Loihi export in Lava
and the deployed run's energy), so the docs cannot quote two students. The energy report's
timing comes from ``energy.json`` (``benchmarks/energy_bench.py``), the event-data students'
energy from ``events.json`` (``benchmarks/events_bench.py``).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from statistics import mean
from textwrap import fill

from neurokd.text import pct

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TWIN = "ReLU twin of the student"


@cache
def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def figures() -> dict:
    return _load("figures.json")


def _row(profile: str, model: str, ann: str = "twin") -> dict:
    for row in figures()["profiles"]:
        if row["profile"] == profile and row["energy_model"] == model and \
                (row["ann"] == TWIN) == (ann == "twin"):
            return row
    raise KeyError(f"figures.json has no {profile} / {model} / {ann} row: run `make figures`")


def _profiles() -> list[str]:
    return list(dict.fromkeys(row["profile"] for row in figures()["profiles"]))


def _models() -> list[str]:
    return list(dict.fromkeys(row["energy_model"] for row in figures()["profiles"]))


def _prose(text: str) -> str:
    """A paragraph wrapped as the hand-written ones are (a line break is a space in Markdown)."""
    return fill(text, 96, break_long_words=False, break_on_hyphens=False)


def _pct(share: float) -> str:
    return pct(share)  # neurokd's one percent formatter


def _ratios(model: str) -> str:
    return ", ".join(f"{_row(p, model)['ratio']:.3f}" for p in _profiles())


def _memory_shares(model: str) -> str:
    cells = []
    for profile in _profiles():
        share = _row(profile, model)["memory_share"]
        cells.append(f"{share:.0%}" + (f" (`{profile}`: in its per-op energies)"
                                       if share == 0 else ""))
    return ", ".join(cells)


def _over_exact() -> tuple[float, float]:
    """``memory`` / ``memory-exact`` at 45nm-fp32: SOPs and the SNN's energy."""
    fanout, exact = _row("45nm-fp32", "memory"), _row("45nm-fp32", "memory-exact")
    return fanout["synops"] / exact["synops"], fanout["snn_energy_pj"] / exact["snn_energy_pj"]


def _identical(shares: dict[str, float]) -> str:
    values = set(shares.values())
    if len(values) == 1:
        return f"{_pct(values.pop())} in every layer"
    return ", ".join(f"{_pct(v)} ({name})" for name, v in shares.items())


def _events_tser() -> tuple[int, list[float]]:
    """Seeds and mean SNN / twin ratio (compute) per profile of the digits-dvs tser students."""
    runs = _load("events.json")["energy"]["digits-dvs"]["tser"]
    return len(runs), [mean(r["rows"][f"{p}/twin"]["ratio"] for r in runs) for p in _profiles()]


def demo_table(results: str) -> str:
    """The demo student's figures as a table; ``results``: the path from the page to
    benchmarks/results/."""
    f, lava = figures(), figures()["loihi"]
    compute = _row("45nm-fp32", "compute")
    sops, energy = _over_exact()
    seeds, dvs = _events_tser()
    threads = f"{f['threads']} torch thread" + ("s" if f["threads"] != 1 else "")
    profiles = ", ".join(_profiles())
    link = f"[figures.md]({results}figures.md)"
    rows = [
        "| the demo student | value |", "|---|---|",
        f"| a fresh `neurokd distill --name demo` ({threads}; {link}): teacher, student (TSER, "
        f"T=4) test accuracy on {f['samples']} samples; the student's mean firing rate | "
        f"{_pct(f['teacher_accuracy'])}, {_pct(f['student_accuracy'])}; "
        f"{f['firing_rate']:.3f} |",
        f"| its wall time ({threads}, {f['load']} at the start) | {f['distill_wall_s']:.1f} s |",
        f"| SOPs per inference (all layers); MACs of the encoding layer (analog input) | "
        f"{compute['synops']:,.0f}; {compute['macs']:,.0f} |",
        f"| SNN / ANN-twin energy, `compute`: {profiles} | {_ratios('compute')} |",
        f"| the same under `memory` (Lemaire et al. / spikingjelly); memory's share of the SNN's "
        f"energy | {_ratios('memory')}; {_memory_shares('memory')} |",
        f"| the same under `memory-exact` (each spike's exact fan-out); memory's share | "
        f"{_ratios('memory-exact')}; {_memory_shares('memory-exact')} |",
        f"| `memory` / `memory-exact` on this student (stride-2 convs): SOPs; SNN energy at "
        f"45nm-fp32 | {sops:.2f}x; {energy:.2f}x |",
        f"| its Loihi export in Lava, {lava['samples']} test samples: argmax agreement with the "
        f"integer model; identical spikes | {_pct(lava['agreement'])}; "
        f"{_identical(lava['identical_spikes'])} |",
        f"| accuracy: float student, 8-bit integer model, Lava; drop | "
        f"{_pct(lava['float_accuracy'])}, {_pct(lava['quantized_accuracy'])}, "
        f"{_pct(lava['lava_accuracy'])}; "
        f"{100 * (lava['float_accuracy'] - lava['lava_accuracy']):.2f} pt |",
        f"| Lava CPU simulation time per sample; the whole run | "
        f"{1000 * lava['seconds_per_sample']:.1f} ms; {lava['simulate_wall_s']:.1f} s |",
        f"| energy per inference under `loihi`: the deployed run (Lava's spike counts), the float "
        f"estimate | {lava['deployed_energy_pj'] / 1e6:.3f} µJ, "
        f"{lava['float_energy_pj'] / 1e6:.3f} µJ "
        f"({lava['deployed_energy_pj'] / lava['float_energy_pj']:.3f}x) |",
        f"| SNN / ANN-twin energy (`compute`): `digits-dvs` tser students (binary input spikes, "
        f"mean of {seeds} seeds, [events.md]({results}events.md)) vs the demo student: "
        f"{profiles} | "
        + ", ".join(f"{d:.3f} vs {_row(p, 'compute')['ratio']:.3f}"
                    for d, p in zip(dvs, _profiles(), strict=True)) + " |",
    ]
    return "\n".join(rows)


def readme_demo() -> str:
    return demo_table("benchmarks/results/")


def results_demo() -> str:
    return demo_table("../benchmarks/results/")


def energy_timing() -> str:
    """docs/energy.md: what the energy report costs against an evaluation pass (energy.json)."""
    e = _load("energy.json")
    t = e["timing"]
    over, paired = t["over_eval"], t["median_of_paired_ratios"]
    return _prose(
        f"`{e['command']} --publish` (written to "
        f"[benchmarks/results/energy.md](../benchmarks/results/energy.md); the shared 2-core CPU "
        f"with a 1-minute load average of {e['load_average']['start'][0]:.1f} from other jobs): "
        f"over the digits test split ({t['samples']} samples), the estimate takes "
        f"{over['energy_report']:.2f}x the time of a plain evaluation pass of the same student "
        f"on the same batches under `compute` and {over['energy_report_memory']:.2f}x under "
        f"`memory` (medians of {t['repeats']} alternating repeats; medians of the per-repeat "
        f"ratios {paired['energy_report']:.2f}x and {paired['energy_report_memory']:.2f}x), "
        f"{over['energy_report_memory_neurobench']:.2f}x with `--neurobench` as well; "
        f"op_counter's `DispatchCounterMode`: {over['op_counter']:.2f}x.")


def _spiking(row: dict) -> list[dict]:
    return [layer for layer in row["layers"] if layer["break_even_rate"] is not None]


def _above(row: dict) -> list[dict]:
    return [layer for layer in _spiking(row) if layer["input_rate"] >= layer["break_even_rate"]]


def _names(layers: list[dict]) -> str:
    names = [f"`{layer['name']}`" for layer in layers]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _break_even_clause(row: dict) -> str:
    above = _above(row)
    if not above:
        return "every spiking layer below its break-even rate"
    rates = "its break-even rate" if len(above) == 1 else "their break-even rates"
    return (f"{_names(above)} above {rates} "
            f"(inputs at " + ", ".join(f"{layer['input_rate']:.1%}" for layer in above)
            + " against " + ", ".join(f"{layer['break_even_rate']:.1%}" for layer in above) + ")")


def energy_measured() -> str:
    """docs/energy.md: the demo student under every profile and energy model (figures.json)."""
    f = figures()
    lines = [
        _prose(f"The demo student of `make figures` ([figures.md](../benchmarks/results/figures.md): "
               f"{_pct(f['student_accuracy'])} test accuracy, {f['threads']} torch thread), per "
               f"inference over the {f['samples']} digits test samples, the ReLU twin as the ANN "
               "(the teacher, twice as wide, in the last column but one):"), "",
        "| profile | model | SNN | ANN twin (priced by) | SNN / twin | SNN / teacher | memory "
        "share of the SNN |", "|---|---|---:|---:|---:|---:|---:|"]
    for profile in _profiles():
        for model in _models():
            twin, teacher = _row(profile, model), _row(profile, model, "teacher")
            share = ("—" if model == "compute" else f"{twin['memory_share']:.0%}"
                     + (" (in the per-op energies)" if twin["memory_share"] == 0 else ""))
            lines.append(f"| `{profile}` | `{model}` | {twin['snn_energy_pj'] / 1e3:.1f} nJ | "
                         f"{twin['ann_energy_pj'] / 1e3:.1f} nJ ({twin['ann_profile']}) | "
                         f"{twin['ratio']:.3f} | {teacher['ratio']:.3f} | {share} |")
    first = _row(_profiles()[0], "compute")
    spiking = [layer["name"] for layer in _spiking(first)]
    analog = [layer["name"] for layer in first["layers"] if layer["name"] not in spiking]
    lines += ["", _prose("Per spiking layer, measured input spike rate / break-even rate against "
                         "the twin's layer (below it the spiking layer is the cheaper; the encoding "
                         "layer " + ", ".join(f"`{name}`" for name in analog)
                         + " takes analog input):"), "",
              "| profile | model | " + " | ".join(f"`{name}`" for name in spiking) + " |",
              "|---|---|" + "---:|" * len(spiking)]
    for profile in _profiles():
        for model in _models():
            cells = [f"{layer['input_rate']:.3f} / {layer['break_even_rate']:.3f}"
                     for layer in _spiking(_row(profile, model))]
            lines.append(f"| `{profile}` | `{model}` | " + " | ".join(cells) + " |")
    lines += ["", _energy_reading()]
    return "\n".join(lines)


def _energy_reading() -> str:
    """What the figures say, in numbers read from figures.json."""
    digital = [p for p in _profiles() if p != "loihi"]
    compute = [_row(p, "compute")["ratio"] for p in digital]
    fp32, int8 = "45nm-fp32", "45nm-int8"
    encoding = _row(fp32, "compute")["layers"][0]
    snn = _row(fp32, "compute")["snn_energy_pj"]
    shares = [_row(p, "memory")["memory_share"] for p in digital]
    sops, energy = _over_exact()
    return _prose(
        f"What the figures say. Under `compute` the profiles of digital cores "
        f"({', '.join(digital)}) see the SNN at {min(compute):.2f}-{max(compute):.2f}x the twin, "
        f"{_break_even_clause(_row(fp32, 'compute'))} at 45nm-fp32: the encoding layer "
        f"(`{encoding['name']}`, {_row(fp32, 'compute')['macs']:,.0f} MACs of analog input) "
        f"costs {encoding['energy_pj'] / 1e3:.1f} of the SNN's {snn / 1e3:.1f} nJ at fp32. Under "
        f"Lemaire et al.'s model as spikingjelly counts it (`memory`) the SNN costs "
        f"{_row(fp32, 'memory')['ratio']:.2f}x the twin at fp32 and "
        f"{_row(int8, 'memory')['ratio']:.2f}x at int8 (8-bit ANN weights and activations "
        f"against 32-bit membrane potentials), memory is {min(shares):.0%}-{max(shares):.0%} of "
        f"its energy, and at fp32 it has {_break_even_clause(_row(fp32, 'memory'))}. Most of "
        "that is spikingjelly's fan-out convention: per output channel, a stride-2 3x3 conv "
        "spike costs 4 synaptic ops, 9 weight reads and 18 potential accesses, where it reaches "
        "2.25 outputs on average (inside the image; fewer at its borders), so `memory` prices "
        f"{sops:.2f}x the SOPs and {energy:.2f}x the SNN energy of `memory-exact`. Counting the "
        f"outputs a spike reaches (`memory-exact`) gives {_row(fp32, 'memory-exact')['ratio']:.2f}x "
        f"at fp32 with {_break_even_clause(_row(fp32, 'memory-exact'))}, and "
        f"{_row(int8, 'memory-exact')['ratio']:.2f}x at int8. On Loihi (memory inside the per-op "
        f"energies), the SNN costs {_row('loihi', 'memory-exact')['ratio']:.2f}x a 45 nm fp32 "
        "twin that pays for its memory traffic (`memory-exact`), against "
        f"{_row('loihi', 'compute')['ratio']:.2f}x when the twin's memory is left out "
        "(`compute`). The numbers assume the 45 nm SRAM curve of Lemaire et al.: a design whose "
        "weights stay in registers, or a larger SRAM, moves them.")


def energy_deployed() -> str:
    """docs/energy.md: the deployed run's energy against the float estimate (figures.json)."""
    lava = figures()["loihi"]
    return _prose(f"On the demo student of `make figures` ({lava['samples']} test samples, `loihi` "
            f"profile; [figures.md](../benchmarks/results/figures.md)) the deployed run costs "
            f"{lava['deployed_energy_pj'] / 1e6:.3f} µJ per inference against "
            f"{lava['float_energy_pj'] / 1e6:.3f} µJ estimated in float "
            f"({lava['deployed_energy_pj'] / lava['float_energy_pj']:.3f}x):")


def _p(value: float) -> str:
    return f"{value:.0e}" if value < 1e-3 else f"{value:.3f}"


def readme_anytime() -> str:
    """README.md: TSER's edge at early timesteps (benchmarks/anytime.py's results)."""
    digits, mnist1d = _load("anytime-digits.json"), _load("anytime-mnist1d.json")
    diffs = digits["tser_minus_kd"]["accuracy_by_timestep"]
    steps = ", ".join(f"{100 * d['mean_diff']:+.2f}" for d in diffs)
    pvalues = ", ".join(_p(d["t_test_p"]) for d in diffs)
    tser = digits["methods"]["tser"]
    kd = digits["methods"]["kd"]
    energy = tser["energy"]
    first = mnist1d["tser_minus_kd"]["accuracy_by_timestep"][0]
    last = mnist1d["tser_minus_kd"]["accuracy_by_timestep"][-1]
    return _prose(
        "**Where TSER does win: early timesteps.** What TSER trains — each timestep's logits "
        "distilled on their own — shows in the accuracy after t of T steps "
        f"([anytime-digits.md](benchmarks/results/anytime-digits.md), {digits['seeds']} seeds, "
        f"T={digits['settings']['timesteps']}): tser − kd is {steps} points at t = 1..T "
        f"(paired t-test p = {pvalues}), and with a confidence exit calibrated on validation "
        f"(`--exit-drop {digits['exit']['drop_points']}`) tser answers after "
        f"{tser['exit_mean_timesteps']['mean']:.2f} timesteps on average against kd's "
        f"{kd['exit_mean_timesteps']['mean']:.2f}, at {energy['loihi']['ratio']['mean']:.3f}x "
        f"(loihi) / {energy['45nm-fp32']['ratio']['mean']:.3f}x (45nm-fp32) the full-T energy. "
        f"On mnist1d ({mnist1d['seeds']} seeds, memorised teacher) tser − kd is "
        f"{100 * first['mean_diff']:+.2f} points at t = 1 (p = {_p(first['t_test_p'])}) and "
        f"{100 * last['mean_diff']:+.2f} at t = T (p = {_p(last['t_test_p'])})."
        + "".join(_anytime_more(name, what) for name, what in (
            ("anytime-mnist1d-informed.json", "mnist1d with the informed teacher"),
            ("anytime-digits-dvs.json", "digits-dvs (event input)"))
            if (RESULTS / name).exists()))


def _anytime_more(name: str, what: str) -> str:
    """One sentence of the README's any-time paragraph for a further data set's results."""
    result = _load(name)
    diffs = result["tser_minus_kd"]["accuracy_by_timestep"]
    first, last = diffs[0], diffs[-1]
    tser, kd = result["methods"]["tser"], result["methods"]["kd"]
    return (f" On {what} ({result['seeds']} seeds, [{name[:-5]}.md](benchmarks/results/"
            f"{name[:-5]}.md)) tser − kd is {100 * first['mean_diff']:+.2f} points at t = 1 "
            f"(p = {_p(first['t_test_p'])}) and {100 * last['mean_diff']:+.2f} at t = T "
            f"(p = {_p(last['t_test_p'])}); the exit takes "
            f"{tser['exit_mean_timesteps']['mean']:.2f} timesteps (kd "
            f"{kd['exit_mean_timesteps']['mean']:.2f}).")


# block name -> (page, generator); the page is README.md or a file in docs/
BLOCKS = {
    "readme-demo-figures": ("README.md", readme_demo),
    "readme-anytime": ("README.md", readme_anytime),
    "results-demo-figures": ("results.md", results_demo),
    "energy-timing": ("energy.md", energy_timing),
    "energy-measured": ("energy.md", energy_measured),
    "energy-deployed": ("energy.md", energy_deployed),
}
