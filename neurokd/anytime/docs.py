"""The exit-rules table of docs/anytime.md, rendered from the registry so the docs cannot drift
(``python tools/gen_docs.py`` writes it; tests/test_docs.py fails when it is stale)."""

from __future__ import annotations

from .registry import EXIT_RULES


def rules_table() -> str:
    """One markdown row per ExitRule, in registry order."""
    lines = ["| `--exit-rule` | stops at the first t with | threshold range | score |",
             "|---|---|---|---|"]
    for rule in EXIT_RULES.values():
        equation = rule.equation.replace("|", "\\|")
        lines.append(f"| `{rule.name}` | `{equation}` | [{rule.low:g}, {rule.high:g}] | "
                     f"{rule.summary} |")
    return "\n".join(lines)
