"""The encoder on the real genomes: node types, hyper-parameters, per-genome vectors, Data."""
from __future__ import annotations

import pytest
import torch
import torchvision

from ml.encoding.encoder import ENCODER_VERSION, GLOBAL_FEATURES, GenomeEncoder
from ml.encoding.genome_vector import TRAINING_KEYS
from ml.encoding.hyperparams import HYPERPARAM_COLUMNS, HYPERPARAM_KEYS
from ml.encoding.vocab import MODULE_TYPES, NUM_NODE_TYPES, type_index
from ml.errors import GenomeError
from tests.conftest import DATA_DIR, reference_rows

ADAPTER_ORIGINAL = "torch.nn.modules.conv.LazyConv2d"
CONV = "torch.nn.modules.conv.Conv2d"


@pytest.fixture(scope="module")
def encoder() -> GenomeEncoder:
    return GenomeEncoder()


@pytest.fixture(scope="module")
def encoded(encoder):
    return [encoder.encode(r["genome"]) for r in reference_rows()]


def test_vocabulary_is_the_seed_one():
    import json

    assert list(MODULE_TYPES) == json.loads((DATA_DIR / "module_types.json").read_text())
    assert NUM_NODE_TYPES == 28


def test_onehot_gives_every_call_its_module_type(encoded):
    """Like the reference's actual module types; unlike the original, re-used modules keep
    their type (the original's name lookup gave 0 to every call after the first)."""
    fixed = 0
    for ref, enc in zip(reference_rows(), encoded):
        expected = [type_index(CONV if n["actual_module_type"] == ADAPTER_ORIGINAL
                               else n["actual_module_type"]) for n in ref["nodes"]]
        onehot = enc.to_data("onehot").x
        assert onehot.shape == (len(expected), 28)
        assert onehot.argmax(1).tolist() == expected
        fixed += sum(1 for a, b in zip(expected, ref["x_argmax"]) if a != b)
    assert fixed > 0  # the re-used ReLUs and the adapters the original left at 0


def test_model_info_is_the_seed_vector(encoded):
    for ref, enc in zip(reference_rows(), encoded):
        assert enc.model_info == pytest.approx(ref["model_info_vector"], abs=1e-6)


def test_combined_encoding_reads_module_attributes(encoder):
    text = ("RetinaNet_Head(LazyConv2d(ResNet(IN0, 2, 1), toChannel(40), 5, 3, 2, 2, 1, 1, "
            "dummyOp(1), 1, 1, 1), Adamax(1, 1), ExponentialLR(1), 1, 1, 1, 1, 1, 1, 1)")
    enc = encoder.encode(text)
    data = enc.to_data("combined")
    col = {c: i for i, c in enumerate(HYPERPARAM_COLUMNS)}
    conv = enc.graph.num_nodes - 2  # the custom conv is the last node before the output
    hp = data.hyperparams[conv]
    assert enc.graph.module_types[conv] == CONV
    assert hp[col["in_channels.0"]] == 2048 and hp[col["out_channels.0"]] == 40
    assert (hp[col["kernel_size.0"]], hp[col["kernel_size.1"]]) == (5, 3)
    assert (hp[col["stride.0"]], hp[col["stride.1"]]) == (2, 2)
    assert hp[col["padding_mode.0"]] == 1  # reflect
    mask = data.hyperparams_mask[conv]
    assert mask[HYPERPARAM_KEYS.index("eps")] == 0 and mask[HYPERPARAM_KEYS.index("groups")] == 1
    assert data.x.dtype == torch.int64 and data.x[conv] == type_index(CONV)
    # The backbone's adapter sees the image's 3 channels.
    adapter = 1
    assert data.hyperparams[adapter][col["in_channels.0"]] == 3
    assert data.node_shape[0].tolist() == [3, 2048, 2448]
    # resnet50 gives 2048x64x77; then k=(5,3), s=2, p=(1,1): (64+2-5)//2+1, (77+2-3)//2+1.
    assert data.node_shape[conv - 1].tolist() == [2048, 64, 77]
    assert data.node_shape[conv].tolist() == [40, 31, 39]


def test_global_features_match_torchvision(encoder):
    enc = encoder.encode("FCOS_Head(ResNet(IN0, 2, 1), Adamax(1, 1), ExponentialLR(1), "
                         "1, 1, 1, 1, 1, 1, 1)")
    with torch.device("meta"):
        resnet = torchvision.models.resnet50()
    body = sum(p.numel() for name, p in resnet.named_parameters() if not name.startswith("fc."))
    adapter = 3 * 3 + 3
    summary = enc.summary()["global"]
    assert summary["backbone_params"] == body + adapter
    assert summary["backbones"] == ["resnet50"]
    assert summary["output_shape"] == [2048, 64, 77]
    assert summary["head"] == "FCOS_Head" and summary["head_anchors_per_location"] == 1
    assert summary["flops"] == 2 * summary["macs"] > 0
    g = dict(zip(GLOBAL_FEATURES, enc.to_data().global_features[0].tolist()))
    assert g["num_backbones"] == 1 and g["backbone_count_ResNet"] == 1
    assert g["depth"] == summary["depth"] > 50


def test_data_objects_batch_together(encoded):
    from torch_geometric.data import Batch

    batch = Batch.from_data_list([e.to_data("combined") for e in encoded[:8]])
    assert batch.num_graphs == 8
    assert batch.model_info.shape == (8, 34)
    assert batch.training.shape == (8, len(TRAINING_KEYS))
    assert batch.global_features.shape == (8, len(GLOBAL_FEATURES))
    assert batch.hyperparams.shape[1] == len(HYPERPARAM_COLUMNS)
    assert set(batch.encoder_version) == {ENCODER_VERSION}


def test_summary_is_json_ready_and_consistent(encoded):
    import json

    s = encoded[3].summary()
    json.dumps(s, allow_nan=False)
    assert s["num_nodes"] == len(s["node_ops"]) == len(s["node_module_types"])
    assert s["num_edges"] == len(s["edges"])
    assert len(s["model_info"]) == 34


def test_architecture_errors_carry_offsets(encoder):
    # Average-pooling a 2048x2448 image with a 9x9 kernel and stride 9 four times leaves 3x3;
    # a fifth time cannot run.
    pool = "AvgPool2d({inner}, 9, 9, 9, 9, 0, 0)"
    chain = "IN0"
    for _ in range(5):
        chain = pool.format(inner=chain)
    text = f"FCOS_Head({chain}, Adamax(1, 1), ExponentialLR(1), 1, 1, 1, 1, 1, 1, 1)"
    with pytest.raises(GenomeError) as info:
        encoder.encode(text)
    assert info.value.code == "SHAPE_ERROR"
    assert text[info.value.offset:].startswith("AvgPool2d(")
    assert info.value.excerpt
