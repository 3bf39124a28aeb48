"""``render``: draw a genome's architecture graph, coloured by module type, as PNG or HTML.

Layout is layered: each node's layer is its longest-path distance from the input (nodes are in
topological order, so one pass over edges sorted by source suffices); layers run left to right
and nodes of a layer stack vertically in node order. Long chains (backbones are hundreds of layers
deep) wrap into bands of at most ``BAND`` layers stacked top to bottom, like lines of text, so
the picture keeps a readable aspect ratio; that is linear in the graph size and stays legible for
the ~1,500-node graphs. Colours are assigned per drawing to the module types it contains (so
neighbouring types never share a hue); non-module nodes (functions, methods) are grey. PNG uses
matplotlib's Agg backend; HTML is one self-contained file with an inline SVG (tooltips via
``<title>``), no scripts or CDNs.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml.encoding.vocab import MODULE_TYPES

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
            "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79", "#637939",
            "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1")
_OTHER_COLOURS = {"placeholder": "#000000", "output": "#000000", "call_function": "#cccccc",
                  "call_method": "#bbbbbb", "get_attr": "#dddddd"}
_TYPE_ORDER = tuple(name.rsplit(".", 1)[-1] for name in MODULE_TYPES)
#: Layers per band before the layout wraps.
BAND = 120


@dataclass(frozen=True)
class Drawing:
    """A laid-out graph: per-node category, position and label, plus edges."""

    categories: list[str]
    labels: list[str]
    layer: np.ndarray
    slot: np.ndarray
    edges: np.ndarray
    colours: dict[str, str]

    @property
    def position(self) -> tuple[np.ndarray, np.ndarray]:
        """(column, row) of each node after wrapping layers into bands of :data:`BAND`."""
        band_height = int(self.slot.max()) + 2
        return self.layer % BAND, (self.layer // BAND) * band_height + self.slot

    def colour(self, category: str) -> str:
        return self.colours.get(category) or _OTHER_COLOURS.get(category, "#999999")

    @property
    def legend(self) -> list[tuple[str, str, int]]:
        """(category, colour, count) of each category present, vocabulary order first."""
        counts: dict[str, int] = {}
        for c in self.categories:
            counts[c] = counts.get(c, 0) + 1
        order = [c for c in self.colours if c in counts] + \
            sorted(c for c in counts if c not in self.colours)
        return [(c, self.colour(c), counts[c]) for c in order]


def assign_colours(categories: list[str]) -> dict[str, str]:
    """Distinct palette colours for the module types present, in vocabulary order."""
    present = set(categories)
    modules = [t for t in _TYPE_ORDER if t in present]
    modules += sorted(c for c in present if c not in _TYPE_ORDER and c not in _OTHER_COLOURS)
    return {t: _PALETTE[i % len(_PALETTE)] for i, t in enumerate(modules)}


def layers(edges: np.ndarray, num_nodes: int) -> np.ndarray:
    """Longest-path layer of each node (edges go forward in node order)."""
    depth = np.zeros(num_nodes, dtype=np.int64)
    for src, dst in edges[np.argsort(edges[:, 0], kind="stable")] if len(edges) else []:
        depth[dst] = max(depth[dst], depth[src] + 1)
    return depth


def layout(text: str) -> Drawing:
    """Encode ``text`` (raises GenomeError) and lay its graph out."""
    from ml.encoding.encoder import GenomeEncoder

    return layout_graph(GenomeEncoder().encode(text).graph)


def layout_graph(graph: Any) -> Drawing:
    """Lay out an encoded genome's graph (``GenomeEncoder.encode(text).graph``)."""
    categories = [t.rsplit(".", 1)[-1] if t else op
                  for t, op in zip(graph.module_types, graph.ops)]
    labels = [f"{i}: {c} ({graph.targets[i]})" for i, c in enumerate(categories)]
    depth = layers(graph.edges, graph.num_nodes)
    slot = np.zeros(graph.num_nodes, dtype=np.int64)
    used: dict[int, int] = {}
    for i, d in enumerate(depth.tolist()):
        slot[i] = used.get(d, 0)
        used[d] = slot[i] + 1
    return Drawing(categories, labels, depth, slot, graph.edges, assign_colours(categories))


def render_png(drawing: Drawing, out: Path) -> None:
    """Matplotlib (Agg) scatter of nodes over edge lines, legend outside the plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    column, row = drawing.position
    x, y = column.astype(float), -row.astype(float)
    width = float(np.clip(column.max() * 0.14 + 4, 8, 22))
    height = float(np.clip(row.max() * 0.22 + 2, 3, 40))
    size = 40 if len(x) < 200 else 18
    fig, ax = plt.subplots(figsize=(width, height))
    if len(drawing.edges):
        segments = np.stack([np.stack([x[drawing.edges[:, 0]], y[drawing.edges[:, 0]]], 1),
                             np.stack([x[drawing.edges[:, 1]], y[drawing.edges[:, 1]]], 1)], 1)
        ax.add_collection(LineCollection(segments, colors="#888888", linewidths=0.4, alpha=0.5,
                                         zorder=1))
    module = np.array([c in drawing.colours for c in drawing.categories])
    colours = np.array([drawing.colour(c) for c in drawing.categories])
    ax.scatter(x[module], y[module], c=colours[module], s=size, zorder=3, edgecolors="black",
               linewidths=0.3)
    ax.scatter(x[~module], y[~module], c=colours[~module], s=size / 2, zorder=2, marker="s",
               edgecolors="none")
    handles = [Line2D([], [], marker="o" if cat in drawing.colours else "s", linestyle="",
                      markersize=7, markerfacecolor=col,
                      markeredgecolor="black", label=f"{cat} ({n})")
               for cat, col, n in drawing.legend]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
              title="module type (nodes)", frameon=False)
    ax.set_title(f"{len(x)} nodes, {len(drawing.edges)} edges, "
                 f"{int(drawing.layer.max()) + 1} layers; read left to right, "
                 f"top band first (wraps every {BAND} layers)")
    ax.set_xlabel("layer within band (longest path from input)")
    ax.set_yticks([])
    ax.margins(0.02)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)


def render_svg(drawing: Drawing, dx: float = 14.0, dy: float = 14.0) -> str:
    """Inline SVG of the layered graph (a ``<title>`` per node for hover details)."""
    pad = 10.0
    column, row = drawing.position
    x = pad + column * dx
    y = pad + row * dy
    w, h = float(x.max() + pad), float(y.max() + pad)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
             f'viewBox="0 0 {w:.0f} {h:.0f}">',
             '<g stroke="#888" stroke-width="0.6" stroke-opacity="0.6">']
    parts += [f'<line x1="{x[s]:.1f}" y1="{y[s]:.1f}" x2="{x[d]:.1f}" y2="{y[d]:.1f}"/>'
              for s, d in drawing.edges.tolist()]
    parts.append('</g><g stroke="#000" stroke-width="0.4">')
    parts += [f'<circle cx="{x[i]:.1f}" cy="{y[i]:.1f}" r="4.5" fill="{drawing.colour(c)}">'
              f'<title>{html.escape(drawing.labels[i])}</title></circle>'
              for i, c in enumerate(drawing.categories)]
    parts.append("</g></svg>")
    return "\n".join(parts)


def render_html(drawing: Drawing, title: str) -> str:
    """A self-contained page: legend plus the SVG (scrolls for large graphs)."""
    legend = "".join(f'<li><span style="background:{col}"></span>{html.escape(cat)} ({n})</li>'
                     for cat, col, n in drawing.legend)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em}} ul{{list-style:none;padding:0;columns:3}}
li span{{display:inline-block;width:.9em;height:.9em;border:1px solid #000;border-radius:50%;
margin-right:.4em;vertical-align:middle}} .graph{{overflow:auto;border:1px solid #ccc}}</style>
</head><body><h1>{html.escape(title)}</h1>
<p>{len(drawing.categories)} nodes, {len(drawing.edges)} edges, {int(drawing.layer.max()) + 1}
layers; left = input, hover a node for its type and target.</p>
<ul class="legend">{legend}</ul>
<div class="graph">{render_svg(drawing)}</div>
</body></html>
"""


def read_genome(arg: str) -> str:
    """A genome string, or ``@FILE`` = the first genome of a file (list or CSV)."""
    if not arg.startswith("@"):
        return arg
    from ml.sources import iter_genomes

    for _, text in iter_genomes(arg[1:]):
        return text
    raise ValueError(f"{arg[1:]}: no genome in file")


def render(genome: str, out: str | Path) -> Path:
    """Render to ``out``; the format follows the suffix (.png, .html/.htm)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        raise ValueError(f"{out}: unsupported output format {suffix!r}; use .png or .html")
    drawing = layout(genome)
    if suffix == ".png":
        render_png(drawing, out)
    else:
        out.write_text(render_html(drawing, f"architecture graph ({out.stem})"), encoding="utf-8")
    return out
