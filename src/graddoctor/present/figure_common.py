"""Pieces every figure shares: sizes, empty figures, layer axes, short names, colours, PNG bytes.

Figures are built without pyplot (headless Agg canvas, no global state).

Example:
    >>> short_name(""), short_name("encoder.layers.11.attention.output.dense")
    ('<model>', 'encoder.lay…output.dense')
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

#: colour of NaN/Inf marks
NONFINITE_COLOR = "tab:red"
#: colour of cells with nothing recorded
MISSING_COLOR = "0.85"


def figure_side(inches: float, least: float, most: float = 16.0) -> float:
    """A figure side that grows with the number of layers, within [least, most] inches.

    Args:
        inches: the wanted side.
        least: the smallest side.
        most: the largest side.

    Returns:
        ``inches`` clipped to [least, most].

    Raises:
        Nothing.

    Example:
        >>> figure_side(0.25 * 200, 7), figure_side(0.25 * 4, 7)
        (16.0, 7)
    """
    return min(max(inches, least), most)


def empty_figure(title: str, why: str) -> Figure:
    """A figure with only a title and why there is nothing to draw.

    Args:
        title: the figure's title.
        why: the message in the middle.

    Returns:
        The Figure.

    Raises:
        Nothing.

    Example:
        >>> empty_figure("loss", "no loss recorded").axes[0].get_title()
        'loss'
    """
    fig = Figure(figsize=(7, 2.5))
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="0.4")
    return fig


def layer_axis(ax: Any, names: Sequence[str], max_labels: int = 30) -> None:
    """Label the x axis of ``ax`` with layer names (every k-th when there are more than ``max_labels``).

    Args:
        ax: a matplotlib Axes with one x position per name.
        names: layer names, input side first.
        max_labels: the most tick labels shown.

    Returns:
        None.

    Raises:
        Nothing.

    Example:
        >>> ax = Figure().add_subplot()
        >>> layer_axis(ax, [str(i) for i in range(90)])
        >>> len(ax.get_xticks())
        30
    """
    every = max(1, math.ceil(len(names) / max_labels))
    ax.set_xticks(range(0, len(names), every), [short_name(n) for n in names[::every]], rotation=90, fontsize=7)
    ax.set_xlim(-0.5, len(names) - 0.5)


def short_name(name: str, keep: int = 24) -> str:
    """A layer name fit for a tick label: "<model>" for the root, long names cut in the middle,
    ``$`` escaped (matplotlib would read ``$...$`` as mathtext and fail on it).

    Args:
        name: a module name ("" for the root).
        keep: the longest label.

    Returns:
        The label.

    Raises:
        Nothing.

    Example:
        >>> short_name("0.body.3"), short_name("$x$").count(chr(92))  # each $ behind a backslash
        ('0.body.3', 2)
    """
    name = name or "<model>"
    name = name if len(name) <= keep else name[: keep // 2 - 1] + "…" + name[-(keep // 2) :]
    return name.replace("$", r"\$")


def to_png(fig: Figure, dpi: int = 90) -> bytes:
    """The figure as PNG bytes (Agg canvas).

    Example:
        >>> to_png(empty_figure("t", "nothing"))[:4]
        b'\\x89PNG'
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
