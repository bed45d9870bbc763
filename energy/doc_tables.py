"""The tables of docs/energy.md, generated from the registry so the docs cannot drift from it.

Each table sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in the file. After
changing a quantity, a cost or a profile, ``python tools/gen_docs.py`` rewrites them;
tests/test_docs.py fails while they are stale.
"""

from __future__ import annotations

from .memory import LAYOUTS, WORDS
from .profiles import BUILTIN, EnergyProfile, profile_keys
from .quantities import COSTS, ENERGY_MODELS, PARTS, QUANTITIES, energy_key

# The per-layer JSON fields that are not quantities or energy groups, in their JSON order
# around them (see LayerEnergy.to_dict).
_LAYER_FIELDS_BEFORE = (
    ("name", "the synaptic layer's module path (e.g. `features.0`)"),
    ("kind", "`conv`, `dense`, or `neuron` (neurons with no conv/linear before them)"),
    ("firing_rate", "the *input event rate*: share of input positions x timesteps holding an "
     "event (a spike, or a non-zero analog value); `LayerEnergy.input_event_rate`"),
)
_LAYER_FIELDS_AFTER = (
    ("output_firing_rate", "spikes per neuron update of the neurons the layer feeds"),
)
_LAYER_FIELDS_LAST = (
    ("energy_pj", "the layer's pJ per inference: the sum of its groups (and of its parts)"),
    ("buffer_bytes", "memory model: bytes of each buffer the layer's accesses went to "
     "(`spike_fifo`, `input_frame`, `parameters`, `output_potentials`, `neuron_potentials`, "
     "`output_frame`): the sizes that set the cost per byte"),
    ("break_even_rate", "the input spike rate at which the layer costs what the ANN layer of "
     "its name costs (null: analog input, or no such ANN layer); <= 0: dearer even when silent"),
    ("below_break_even", "whether the measured input rate (`firing_rate`) is below it: the "
     "spiking layer is the cheaper one"),
)


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def quantities_markdown() -> str:
    lines = [_row("quantity (JSON key)", "table column", "priced by", "energy group (JSON key)",
                  "part", "model", "one unit"), "|---|---|---|---|---|---|---|"]
    for q in QUANTITIES:
        unit = q.meaning + (f"; a subset of `{q.subset_of}`, priced at its own cost instead"
                            if q.subset_of else "")
        priced = (f"SRAM curve, one `{q.access.word}` word in `{q.access.buffer}`" if q.access
                  else f"`{q.cost}`")
        lines.append(_row(f"`{q.name}`", q.header or "—", priced,
                          f"{q.group} (`{q.energy_key}`)", q.part, q.model, unit))
    return "\n".join(lines)


def models_markdown() -> str:
    lines = [_row("`--energy-model`", "extends", "counts its own way", "parts: groups", "what"),
             "|---|---|---|---|---|"]
    for m in ENERGY_MODELS.values():
        swaps = ", ".join(f"`{new}` for `{old}`" for old, new in m.replaces) or "—"
        parts = "; ".join(f"{part}: {', '.join(groups)}" for part, groups in m.parts.items())
        lines.append(_row(f"`{m.name}`", f"`{m.extends}`" if m.extends else "—", swaps, parts,
                          m.description))
    return "\n".join(lines)


def costs_markdown() -> str:
    lines = [_row("profile key", "pJ per", "if a profile lacks it"), "|---|---|---|"]
    for cost in COSTS:
        needed = [m.name for m in ENERGY_MODELS.values() if m.needs(cost.key)]
        missing = (f"priced at `{cost.fallback}`" if cost.fallback else
                   f"refused by the {', '.join(needed)} model" if needed else "not used")
        lines.append(_row(f"`{cost.key}`", cost.unit, missing))
    return "\n".join(lines)


def layouts_markdown() -> str:
    lines = [_row("`memory_layout`", *(f"{word} (B)" for word in WORDS), "source"),
             "|---|" + "---:|" * len(WORDS) + "---|"]
    lines += [_row(f"`{layout.name}`", *(str(layout.word_bytes[w]) for w in WORDS),
                   layout.source) for layout in LAYOUTS.values()]
    return "\n".join(lines)


def _cost_cell(profile: EnergyProfile, key: str) -> str:
    return f"{profile.costs[key]:g}" if key in profile.costs else "—"


def profiles_markdown(profiles: dict[str, EnergyProfile] | None = None) -> str:
    chosen = profiles or BUILTIN
    lines = [_row("profile", *(f"{c.header} (`{c.key}`)" for c in COSTS), "memory layout",
                  "ANN priced by"),
             "|---|" + "---:|" * len(COSTS) + "---|---|"]
    lines += [_row(f"`{p.name}`", *(_cost_cell(p, c.key) for c in COSTS),
                   f"`{p.memory_layout}`", f"`{p.ann_profile or p.name}`")
              for p in chosen.values()]
    lines += ["", "pJ per unit. Sources:", ""]
    for p in chosen.values():
        lines.append(f"- `{p.name}`: {p.source}")
        by_source: dict[str, list[str]] = {}
        for key in p.costs:
            by_source.setdefault(p.cost_source(key), []).append(f"`{key}`")
        lines += [f"  - {', '.join(keys)}: {source}" for source, keys in by_source.items()]
    lines += ["", f"TOML keys: {', '.join(f'`{key}`' for key in profile_keys())}."]
    return "\n".join(lines)


def json_layer_keys_markdown() -> str:
    groups = dict.fromkeys(q.group for q in QUANTITIES)
    rows = [*_LAYER_FIELDS_BEFORE,
            *((f"{q.name}", f"{q.meaning} (per inference; {q.model} model)") for q in QUANTITIES),
            *_LAYER_FIELDS_AFTER,
            *((energy_key(g), f"pJ per inference of the {g} group "
               f"({', '.join(q.name for q in QUANTITIES if q.group == g)})") for g in groups),
            *((energy_key(p), f"pJ per inference of the {p} part (groups "
               f"{', '.join(dict.fromkeys(q.group for q in QUANTITIES if q.part == p))})")
              for p in PARTS),
            *_LAYER_FIELDS_LAST]
    lines = [_row("key", "meaning"), "|---|---|"]
    lines += [_row(f"`{key}`", meaning) for key, meaning in rows]
    return "\n".join(lines)


TABLES = {
    "models-table": models_markdown,
    "layouts-table": layouts_markdown,
    "quantities-table": quantities_markdown,
    "costs-table": costs_markdown,
    "profiles-table": profiles_markdown,
    "json-layer-keys": json_layer_keys_markdown,
}
