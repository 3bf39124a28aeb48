"""``hierarchical_gnn`` (issue 33): the macro graph of a known genome, the flow-aware pass's
order, training, prediction and a bundle round trip on real genomes, a NAS-Bench-Graph
architecture."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.encoding import macro
from ml.encoding.encoder import GenomeEncoder
from ml.models.hierarchical import FlowPass
from ml.models.registry import create
from ml.train import load_bundle, save_bundle
from tests.conftest import train_rows
from tests.ml.models.test_models import FAST, records, subset_csv  # noqa: F401 - fixtures

#: Row 183 of the training CSV is ``FasterRCNN_Head(Inception_V3(IN0, 0), <training genes>)``.
_INCEPTION_ONLY = 183


def _genome(layers: str) -> str:
    text = train_rows()[_INCEPTION_ONLY]["genome"]
    assert text.startswith("FasterRCNN_Head(Inception_V3(IN0, 0), ")
    return text.replace("Inception_V3(IN0, 0)", layers, 1)


@pytest.fixture(scope="module")
def inception_dropout():
    """Inception_V3 -> Dropout_2D: a backbone cell, then a custom layer."""
    return GenomeEncoder().encode(_genome("Dropout_2D(Inception_V3(IN0, 0), 0.5)"))


def test_macro_graph_of_a_known_genome(inception_dropout):
    encoded = inception_dropout
    plain = encoded.to_data("combined")  # as a dataset shard holds it: no layer_segments
    given = encoded.to_data("combined", layer_segments=encoded.layer_segments)
    truth = [(b is not None, s, t) for b, s, t in encoded.layer_segments]
    assert [t[0] for t in truth] == [True, False]
    assert macro.record_segments(plain) == truth == macro.record_segments(given)

    m = macro.macro_graph(plain)
    assert m.kinds.tolist() == [macro.INPUT, macro.ADAPTER, macro.CELL, macro.LAYER,
                                macro.OUTPUT]
    assert m.edges.tolist() == [[0, 1, 2, 3], [1, 2, 3, 4]]
    (_, start, stop), (_, dropout, _) = truth
    assert m.rows.tolist()[:2] == [0, start] and m.rows[3:].tolist() == [dropout,
                                                                           plain.num_nodes - 1]
    assert [(c.start, c.stop) for c in m.cells] == [(start + 1, stop)]
    assert m.cell_nodes.tolist() == [2]
    # The cell statistics sit on the cell node, the head's on the output node only.
    assert m.extra_present[2, :3].all() and not m.extra_present[[0, 1, 3]].any()
    assert m.extra[2, 0] == pytest.approx(np.log1p(21.8e6), rel=0.05)  # Inception's params
    assert m.extra_present[4, 3:].all() and not m.extra_present[4, :3].any()
    forward, backward = macro.topological_levels(m.edges, m.num_nodes)
    assert forward.tolist() == list(range(5)) and backward.tolist() == list(range(4, -1, -1))
    # The same variant elsewhere (another genome, another position) is the same cell.
    alone = GenomeEncoder().encode(_genome("Inception_V3(IN0, 0)")).to_data("combined")
    assert [c.key for c in macro.macro_graph(alone).cells] == [m.cells[0].key]


def test_flow_pass_visits_nodes_in_topological_order():
    """Forward, a node's state depends on its ancestors only: changing a sink's input leaves
    every other state as it was, changing the source changes every state."""
    torch.manual_seed(0)
    flow = FlowPass(8)
    src, dst = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 3, 3])
    level, _ = macro.topological_levels(np.stack([src.numpy(), dst.numpy()]), 4)
    level = torch.from_numpy(level)
    x = torch.randn(4, 8)
    base = flow(x, src, dst, level)
    sink = x.clone()
    sink[3] += 1.0
    moved = flow(sink, src, dst, level)
    assert torch.equal(moved[:3], base[:3]) and not torch.allclose(moved[3], base[3])
    source = x.clone()
    source[0] += 1.0
    moved = flow(source, src, dst, level)
    assert all(not torch.allclose(moved[i], base[i]) for i in range(4))


def test_trains_predicts_and_round_trips_a_bundle(records, inception_dropout,
                                                  tmp_path):
    model = create("hierarchical_gnn", {**FAST, "epochs": 2, "val_fraction": 0.25})
    history = model.fit(records)
    assert len(history["members"][0]) == 2
    # Each distinct backbone body is one cell, however many genomes hold it.
    assert 0 < len(model.cells) < sum(1 for r in records
                                      for s in macro.record_segments(r) if s[0])
    pred = model.predict(records[:8])
    assert np.isfinite(pred.mean).all() and ((pred.p_fail >= 0) & (pred.p_fail <= 1)).all()

    loaded = load_bundle(save_bundle(model, tmp_path / "bundle"))
    assert len(loaded.cells) == 0  # rebuilt from what it predicts
    again = loaded.predict(records[:8])
    # Each cell embedded once and kept for the next request, until the network trains again.
    net = loaded.networks[0]
    assert net.cached_cells == len(loaded.cells) > 0
    net.train()
    assert net.cached_cells == 0
    np.testing.assert_array_equal(again.mean, pred.mean)
    np.testing.assert_array_equal(again.p_fail, pred.p_fail)
    # The encoder's layer_segments (the service's records) and matching agree.
    encoded = inception_dropout
    with_segments = encoded.to_data("combined", layer_segments=encoded.layer_segments)
    np.testing.assert_allclose(loaded.predict([with_segments]).mean,
                               loaded.predict([encoded.to_data("combined")]).mean, rtol=1e-6)


def test_a_nasbench_graph_architecture_is_its_own_macro_graph():
    from ml.evaluation.nasbench_graph import arch_to_data, graph_edges

    rng = np.random.default_rng(0)
    links = [(0, 0, 1, 2), (0, 1, 2, 3), (0, 0, 0, 0), (0, 1, 1, 2)]
    ops = ("gcn", "gat", "skip", "fc", "sage", "cheb")
    archs = [arch_to_data(links[i % 4], [ops[j] for j in rng.integers(0, 6, 4)],
                          {"perf": float(rng.random()), "para": 0.1, "valid_perf": 0.5}, i)
             for i in range(24)]
    m = macro.macro_graph(archs[0])
    assert (m.kinds == macro.OP).all() and m.num_nodes == 6 and not m.cells
    assert sorted(map(tuple, m.edges.T.tolist())) == sorted(graph_edges(links[0]))
    forward, _ = macro.topological_levels(m.edges, m.num_nodes)
    assert forward.tolist() == [0, 1, 1, 2, 2, 3]  # the output after its deepest leaf

    model = create("hierarchical_gnn", {**FAST, "metrics": ("perf",), "epochs": 2})
    model.fit(archs[:16], archs[16:])
    pred = model.predict(archs)
    assert pred.mean.shape == (24, 1) and np.isfinite(pred.mean).all()
