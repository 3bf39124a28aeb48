"""The dashboard's charts: inline SVG drawn on the server with matplotlib (no script, no CDN).

Every chart has a title, labelled axes and, where there is more than one series, a legend; the
colours are the colour-blind-safe Okabe-Ito set on white, and text is near-black, so the charts
read like the rest of the page. Each returns a :class:`Chart`: the SVG as a ``data:`` URI for an
``<img>`` (matplotlib styles its SVG with ``style`` attributes, which the pages' Content
Security Policy would strip from inline markup; an image is its own document) and the text
for its ``alt``.
"""
from __future__ import annotations

import base64
import io
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

#: Okabe-Ito: distinguishable with every common colour-vision deficiency.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
INK = "#1a1a1a"
#: pyplot's state is global; one figure at a time.
_LOCK = threading.Lock()
_STYLE = {"font.size": 10, "axes.edgecolor": INK, "axes.labelcolor": INK, "xtick.color": INK,
          "ytick.color": INK, "text.color": INK, "axes.titleweight": "bold",
          "svg.fonttype": "none", "svg.hashsalt": "nas-surrogate"}


def _finite(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


@dataclass(frozen=True)
class Chart:
    src: str
    alt: str


def _svg(fig: Any, title: str, alt: str = "") -> Chart:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    uri = "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return Chart(uri, f"{title}. {alt}".strip())


def histogram(values: Sequence[Any], metric: str, bins: int = 30) -> Chart:
    """The distribution of one metric over a dataset's evaluated genomes. Heavy-tailed metrics
    (a positive range over three decades) are binned on a log axis so the bulk stays visible."""
    finite = _finite(values)
    title = f"{metric}: {len(finite)} evaluated genomes"
    with _LOCK, plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(5.2, 2.8))
        log = bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 1000
        if finite:
            edges: Any = bins
            if log:
                lo, hi = math.log10(min(finite)), math.log10(max(finite))
                edges = [10 ** (lo + (hi - lo) * i / bins) for i in range(bins + 1)]
                ax.set_xscale("log")
            ax.hist(finite, bins=edges, color=COLOURS[0], edgecolor="white", linewidth=0.5)
        else:
            ax.text(0.5, 0.5, "no finite values", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel(f"{metric} (as measured{', log scale' if log else ''})")
        ax.set_ylabel("genomes (count)")
        ax.grid(axis="y", alpha=0.3)
        alt = (f"Histogram from {min(finite):.4g} to {max(finite):.4g}." if finite else "")
        return _svg(fig, title, alt)


def epoch_curves(epochs: Sequence[dict[str, Any]]) -> Chart:
    """A training job's per-epoch rows: training loss (left axis) and validation Kendall tau
    (right axis) against the epoch, one line per ensemble member and attempt."""
    title = "training progress per epoch"
    series: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for row in epochs:
        metrics = row.get("metrics") or {}
        series.setdefault((row.get("attempt"), metrics.get("member", 0)), []).append(
            {"epoch": row.get("epoch"), **metrics})
    with _LOCK, plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 3.0))
        right = ax.twinx()
        for i, ((attempt, member), rows) in enumerate(sorted(series.items(), key=str)):
            label = f"member {int(member)}" + (f", attempt {attempt}" if attempt not in
                                                (None, 1) else "")
            xs = [int(r["epoch"]) + 1 for r in rows if r.get("epoch") is not None]
            loss = [r.get("train_loss") for r in rows]
            ax.plot(xs, loss, color=COLOURS[0], alpha=1.0 - 0.25 * (i % 3),
                    marker="o", markersize=3, label=f"training loss ({label})")
            taus = [(x, r["val_tau"]) for x, r in zip(xs, rows)
                    if isinstance(r.get("val_tau"), (int, float))]
            if taus:
                right.plot([x for x, _ in taus], [t for _, t in taus], color=COLOURS[1],
                           marker="s", markersize=3, linestyle="--",
                           label=f"validation tau ({label})")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (Huber + ranking)", color=COLOURS[0])
        right.set_ylabel("validation Kendall tau-b", color=COLOURS[1])
        handles = ax.get_legend_handles_labels()
        handles_r = right.get_legend_handles_labels()
        if handles[0] or handles_r[0]:
            ax.legend(handles[0] + handles_r[0], handles[1] + handles_r[1], fontsize=8,
                      loc="best", frameon=False)
        ax.grid(alpha=0.3)
        last = epochs[-1].get("metrics") or {} if epochs else {}
        alt = f"{len(epochs)} epoch rows; the latest training loss is " \
              f"{last.get('train_loss', float('nan')):.4g}."
        return _svg(fig, title, alt)


def trust_per_generation(comparison: dict[str, Any]) -> Chart | None:
    """The champion/challenger comparison's SPEA2 top-30 % trust per scored generation (each
    generation of the champion's data held out in turn; comparisons recorded before that rule:
    the generation-forward protocol, trained on earlier generations, scored on this one)."""
    sides = [(name, comparison.get(name) or {}) for name in ("challenger", "champion")]
    sides = [(n, s) for n, s in sides if s.get("per_generation")]
    if not sides:
        return None
    title = ("trust on the held-out generation" if comparison.get("held_out") else
             "trust on the next generation") + " (SPEA2 top-30 % overlap)"
    with _LOCK, plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 3.0))
        for i, (name, side) in enumerate(sides):
            rows = side["per_generation"]
            version = side.get("version")
            label = name + (f" (v{version})" if version else "")
            ax.plot([int(r["generation"]) for r in rows],
                    [r["trust_spea2_top30"] if r["trust_spea2_top30"] is not None
                     else float("nan") for r in rows],
                    color=COLOURS[i], marker="os"[i], linestyle="-" if i == 0 else "--",
                    label=label)
        ax.set_ylim(-0.02, 1.02)
        # Generations are whole numbers: ticks at 6.5 would name a generation that never was.
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.set_xlabel("scored generation")
        ax.set_ylabel("overlap with the true top 30 % (0-1)")
        ax.legend(frameon=False, fontsize=8)
        ax.grid(alpha=0.3)
        return _svg(fig, title, "Lines of the challenger and the champion over the scored "
                    "generations; the table below has the numbers.")
