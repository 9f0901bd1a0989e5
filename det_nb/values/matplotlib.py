"""matplotlib: a figure by what a reader sees, its pixels as Agg renders them.

A figure's objects hold callbacks, counters and parent links that no comparison can use,
while the picture is the result: the figure is drawn by Agg (what Jupyter's inline backend
and ``savefig`` draw with) and compared by its RGBA pixels, size and dpi. Axes,
lines and other artists are compared by the figure they are drawn in.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from det_nb.values.base import Family, View, bad, find, parts


class Matplotlib(Family):
    """``Figure`` (and ``SubFigure``) by its rendered pixels; any other artist by its figure."""

    name = "matplotlib"
    module = "matplotlib"

    def view(self, value: object, module: ModuleType | None) -> View | None:
        mpl: Any = module
        if isinstance(value, find(mpl, "figure.Figure")):
            return _figure_view(value)
        if isinstance(value, find(mpl, "figure.SubFigure") + find(mpl, "artist.Artist")):
            kind = f"matplotlib {type(value).__name__}"
            figure = getattr(value, "figure", None)
            if figure is None:
                return bad(value, "an artist in no figure has no picture to compare")
            return parts(kind, {"figure": figure}, f"{kind} (by its figure's pixels)")
        return None


def _figure_view(figure: Any) -> View:
    """The figure drawn by Agg: its RGBA pixels, with its size in inches and dpi.

    A figure whose canvas is not Agg's (one ``plt.show()`` closed, a GUI or widget one) is
    drawn on a temporary Agg canvas and given its own back, as ``savefig`` does.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    own = figure.canvas
    try:
        canvas = own if isinstance(own, FigureCanvasAgg) else FigureCanvasAgg(figure)
        canvas.draw()
        import numpy as np  # matplotlib is loaded, and with it NumPy

        pixels = np.array(canvas.buffer_rgba())  # a copy: the buffer is redrawn in place
    finally:
        figure.set_canvas(own)
    width, height = (float(inches) for inches in figure.get_size_inches())
    named = {"size_inches": (width, height), "dpi": float(figure.dpi), "pixels": pixels}
    summary = f"matplotlib Figure {pixels.shape[1]}x{pixels.shape[0]} px (by its pixels)"
    return parts("matplotlib Figure", named, summary)
