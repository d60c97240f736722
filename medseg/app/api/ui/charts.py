"""Plots as inline SVG, drawn by matplotlib's object API (``Figure``, no pyplot: pages render on
several threads at once). A panel is lines over time, optional bands (a confidence interval,
already clipped to the metric's range by :mod:`medseg.quality.slo`) and horizontal objectives."""

from __future__ import annotations

import io
from dataclasses import dataclass, field


@dataclass
class Panel:
    title: str
    lines: list[tuple[str, list, list]] = field(default_factory=list)  # (label, times, values)
    bands: list[tuple[list, list, list]] = field(default_factory=list)  # (times, low, high)
    bars: tuple[list, list, float] | None = None  # (times, values, width in days)
    objectives: list[tuple[float, str]] = field(default_factory=list)
    ylim: tuple[float, float] | None = None
    ylabel: str = ""


def svg(panels: list[Panel], span: tuple | None = None, width_in: float = 9.0, panel_height_in: float = 2.2) -> str:
    """The panels stacked with one shared time axis (``span``: its first and last time), as an
    ``<svg>`` element."""
    from matplotlib import rc_context
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure  # no pyplot, no backend switch: a Figure renders itself

    fig = Figure(figsize=(width_in, panel_height_in * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, p in zip(axes, panels):
        if p.bars is not None and p.bars[0]:
            ax.bar(p.bars[0], p.bars[1], width=p.bars[2], align="edge", color="#4c78a8", alpha=0.6,
                   label=p.ylabel or p.title)
        for (xs, lo, hi), colour in zip(p.bands, _colours()):
            if xs:
                ax.fill_between(xs, lo, hi, alpha=0.18, color=colour, linewidth=0)
        for (label, xs, ys), colour in zip(p.lines, _colours()):
            if xs:
                ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, color=colour, label=label)
        for value, label in p.objectives:
            ax.axhline(value, linestyle="--", color="#c0392b", linewidth=1, label=label)
        ax.set_title(p.title, fontsize=10, loc="left")
        ax.set_ylabel(p.ylabel, fontsize=8)
        if p.ylim:
            ax.set_ylim(*p.ylim)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
        if not (p.lines or p.bars and p.bars[0]):
            ax.text(0.5, 0.5, "no data in this period", ha="center", va="center", transform=ax.transAxes,
                    fontsize=9, color="#777")
    if span is not None:
        axes[-1].set_xlim(*span)
    locator = AutoDateLocator()
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(ConciseDateFormatter(locator))
    fig.tight_layout()
    out = io.StringIO()
    with rc_context({"svg.fonttype": "none"}):  # text stays text: smaller, selectable, the page's font
        fig.savefig(out, format="svg")
    text = out.getvalue()
    return text[text.index("<svg"):]


def _colours():
    return iter(("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"))
