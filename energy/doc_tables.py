"""The tables of docs/energy.md, generated from the registry so the docs cannot drift from it.

Each table sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in the file. After
changing a quantity, a cost or a profile, ``python tools/gen_docs.py`` rewrites them;
tests/test_docs.py fails while they are stale.
"""

from __future__ import annotations

from .profiles import BUILTIN, EnergyProfile, profile_keys
from .quantities import COSTS, ENERGY_MODELS, QUANTITIES, energy_key

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


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def quantities_markdown() -> str:
    lines = [_row("quantity (JSON key)", "table column", "priced by", "energy group (JSON key)",
                  "model", "one unit"), "|---|---|---|---|---|---|"]
    for q in QUANTITIES:
        unit = q.meaning + (f"; a subset of `{q.subset_of}`, priced at its own cost instead"
                            if q.subset_of else "")
        lines.append(_row(f"`{q.name}`", q.header or "—", f"`{q.cost}`",
                          f"{q.group} (`{q.energy_key}`)", q.model, unit))
    return "\n".join(lines)


def costs_markdown() -> str:
    lines = [_row("profile key", "pJ per", "if a profile lacks it"), "|---|---|---|"]
    for cost in COSTS:
        needed = [m.name for m in ENERGY_MODELS.values()
                  if any(q.cost == cost.key for q in m.quantities)]
        missing = (f"priced at `{cost.fallback}`" if cost.fallback else
                   f"refused by the {', '.join(needed)} model" if needed else "not used")
        lines.append(_row(f"`{cost.key}`", cost.unit, missing))
    return "\n".join(lines)


def _cost_cell(profile: EnergyProfile, key: str) -> str:
    return f"{profile.costs[key]:g}" if key in profile.costs else "—"


def profiles_markdown(profiles: dict[str, EnergyProfile] | None = None) -> str:
    chosen = profiles or BUILTIN
    lines = [_row("profile", *(f"{c.header} (`{c.key}`)" for c in COSTS)),
             "|---|" + "---:|" * len(COSTS)]
    lines += [_row(f"`{p.name}`", *(_cost_cell(p, c.key) for c in COSTS))
              for p in chosen.values()]
    lines += ["", "pJ per unit. Sources:", ""]
    lines += [f"- `{p.name}`: {p.source}" for p in chosen.values()]
    lines += ["", f"TOML keys: {', '.join(f'`{key}`' for key in profile_keys())}."]
    return "\n".join(lines)


def json_layer_keys_markdown() -> str:
    groups = dict.fromkeys(q.group for q in QUANTITIES)
    rows = [*_LAYER_FIELDS_BEFORE,
            *((f"{q.name}", f"{q.meaning} (per inference)") for q in QUANTITIES),
            *_LAYER_FIELDS_AFTER,
            *((energy_key(g), f"pJ per inference of the {g} group "
               f"({', '.join(q.name for q in QUANTITIES if q.group == g)})") for g in groups),
            ("energy_pj", "the layer's pJ per inference: the sum of its groups")]
    lines = [_row("key", "meaning"), "|---|---|"]
    lines += [_row(f"`{key}`", meaning) for key, meaning in rows]
    return "\n".join(lines)


TABLES = {
    "quantities-table": quantities_markdown,
    "costs-table": costs_markdown,
    "profiles-table": profiles_markdown,
    "json-layer-keys": json_layer_keys_markdown,
}
