"""``render``: layered architecture drawings (PNG via Agg, self-contained HTML) of real genomes."""
from __future__ import annotations

import re

import numpy as np
import pytest

from ml.cli import main
from ml.render import BAND, layers, layout, read_genome, render
from tests.conftest import SEEDS_TXT, seed_genomes


def test_longest_path_layers():
    edges = np.array([[0, 1], [1, 2], [0, 2], [2, 3], [0, 3]])
    assert layers(edges, 4).tolist() == [0, 1, 2, 3]
    assert layers(np.zeros((0, 2), dtype=np.int64), 2).tolist() == [0, 0]


@pytest.fixture(scope="module")
def drawing():
    return layout(seed_genomes()[0])


def test_layout_is_layered_and_wraps(drawing):
    src, dst = drawing.edges[:, 0], drawing.edges[:, 1]
    assert (drawing.layer[dst] > drawing.layer[src]).all()  # every edge goes forward a layer
    column, row = drawing.position
    assert column.max() < BAND
    assert len({(c, r) for c, r in zip(column.tolist(), row.tolist())}) == len(column)  # no overlap
    legend = {cat: n for cat, _, n in drawing.legend}
    assert sum(legend.values()) == len(drawing.categories)
    assert "Conv2d" in legend and "placeholder" in legend
    module_colours = [drawing.colours[c] for c in drawing.colours]
    assert len(set(module_colours)) == len(module_colours)  # distinct hues per module type


def test_png(tmp_path):
    out = render(seed_genomes()[1], tmp_path / "graph.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_html_is_self_contained_via_cli(tmp_path, capsys):
    out = tmp_path / "graph.html"
    assert main(["render", f"@{SEEDS_TXT}", "--out", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "</html>" in page
    assert "<script" not in page and not re.search(r"(src|href)=\"https?:", page)
    drawing = layout(read_genome(f"@{SEEDS_TXT}"))
    assert page.count("<circle") == len(drawing.categories)
    assert page.count("<line") == len(drawing.edges)
    assert "Conv2d" in page  # the legend


def test_bad_genome_and_bad_suffix(tmp_path, capsys):
    assert main(["render", "RetinaNet_Head(", "--out", str(tmp_path / "g.png")]) == 1
    assert "UNEXPECTED_END" in capsys.readouterr().err
    assert main(["render", seed_genomes()[0], "--out", str(tmp_path / "g.svg")]) == 2
    assert "unsupported output format" in capsys.readouterr().err
