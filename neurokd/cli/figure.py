"""What every plot neurokd draws shares: matplotlib without a display, and a PNG written whole
or not at all. A new plot is a module in ``neurokd/cli/`` that builds a figure with
:func:`pyplot` and writes it with :func:`write_png`.

    >>> plt = pyplot()
    >>> figure, axis = plt.subplots()
    >>> write_png(figure, "runs/demo/my-plot.png")   # atomic; the figure is closed
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..files.safe_io import atomic_path


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend: files only, no display (CI, ssh). Imported
    here, on first use, so that commands drawing nothing never pay for matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


MAX_LABEL = 80  # characters of a name from a file shown in a plot


def plot_text(value: Any, limit: int = MAX_LABEL) -> str:
    """A name read from a file (a layer, method or dataset name) as plain text for a plot:
    control characters shown as spaces, cut to ``limit`` characters, and ``$`` escaped, so
    matplotlib never parses it as mathtext (``$\\frac{$`` fails to draw; a megabyte-long
    name fills the glyph cache)."""
    text = "".join(c if c.isprintable() else " " for c in str(value)[:limit + 1])
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return text.replace("$", r"\$")


def write_png(figure: Any, path: str | Path, dpi: int = 100) -> Path:
    """``figure`` as a PNG at ``path`` (temporary name, then renamed: never half a file); the
    figure is closed in any case, so a long-running process does not collect them."""
    plt = pyplot()
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(figure)
    return Path(path)
