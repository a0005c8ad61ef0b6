"""Figures written by every stage (training curves, the dictionary's atoms, the explanations): a
matplotlib Figure outside pyplot and its atomic PNG write, in one place below the stages."""

from __future__ import annotations

from pathlib import Path

from proxyseg.core.atomic import atomic_path

__all__ = ["new_figure", "save_figure"]


def new_figure(**kwargs):
    """A matplotlib Figure on an Agg canvas, outside pyplot (no global state, no GUI backend, nothing to
    close)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | Path, *, cropped: bool = False) -> None:
    """Write ``fig`` as PNG atomically (under a temporary name, then renamed: on any error no file, partial
    or temporary, is left).

    Two layouts, as the figures have always been written: by default the figure is laid out
    (``tight_layout``) and saved at its own dpi (the training curves); ``cropped=True`` saves it at 110 dpi
    cropped to what it draws (``bbox_inches="tight"``, no ``tight_layout``: the explanation figures).
    """
    if cropped:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        return
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
