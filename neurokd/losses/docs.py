"""The methods table of docs/losses.md, rendered from the registry so the docs cannot drift
(``python tools/gen_docs.py`` writes it; tests/test_docs.py fails when it is stale)."""

from __future__ import annotations

from .registry import LOSS_SPECS


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def methods_table() -> str:
    """One markdown row per LossSpec, in registry order."""
    lines = ["| method | kind | teacher | reads | terms | group | what it is | formula |",
             "|---|---|---|---|---|---|---|---|"]
    for spec in LOSS_SPECS.values():
        reads = ", ".join(f"`--{p.replace('_', '-')}`" for p in spec.params) or "—"
        terms = ", ".join(f"`{t}`" for t in spec.terms)
        lines.append(f"| `{spec.name}` | {spec.kind} | {'yes' if spec.needs_teacher else 'no'} "
                     f"| {reads} | {terms} | {spec.group} | {_cell(spec.summary)} "
                     f"| `{_cell(spec.formula)}` |")
    return "\n".join(lines)
