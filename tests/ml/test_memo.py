"""The speed-ups of issue 14 §3 change no result: the per-layer compile memo, the path-row
memo and the one-pass parser give exactly what the plain code gives, on the real genomes and
on bred offspring, and their caches stay within their bounds."""
from __future__ import annotations

import random
from functools import lru_cache

import numpy as np
import pytest
import torch

from ml.errors import GenomeError
from ml.memo import Memo, spelled
from tests.conftest import real_genomes, seed_genomes


@lru_cache(maxsize=1)
def bred_genomes() -> tuple[str, ...]:
    """300 offspring of the last real genomes (crossover and mutation, as the search breeds)."""
    from ml.search import pset as ps
    from ml.search.variation import overpopulate

    pool = [(ps.to_tree(t), str(i)) for i, t in enumerate(real_genomes()[-30:])]
    bred = overpopulate(pool, 300, random.Random(11), set(), lambda batch: [True] * len(batch))
    return tuple(child.genome for child in bred.kept)


def _sample() -> list[str]:
    from ml.sampling import sample_compiling

    return list(real_genomes()) + list(bred_genomes()) + sample_compiling(100, seed=3)


def _clear_memos() -> None:
    from ml.arch.compiler import BACKBONE_MEMO, LAYER_MEMO
    from ml.features.paths import PATH_MEMO

    for memo in (LAYER_MEMO, BACKBONE_MEMO, PATH_MEMO):
        memo.clear()


def _tensors(data) -> dict[str, bytes]:
    return {k: (v.dtype, tuple(v.shape), v.numpy().tobytes()) if torch.is_tensor(v) else v
            for k, v in data.to_dict().items()}


def test_memo_is_a_bounded_lru() -> None:
    memo = Memo(3)
    for i in range(5):
        memo.put(i, str(i))
    assert len(memo) == 3 and memo.get(0) is None and memo.get(4) == "4"
    memo.get(2)
    memo.put(5, "5")  # evicts 3, the least recently used
    assert memo.get(3) is None and memo.get(2) == "2"
    with pytest.raises(ValueError):
        memo.get_or_build(9, lambda: int("x"))
    assert memo.get(9) is None  # a failed build is not remembered
    assert spelled((1, 1.0, True, 0.0, -0.0)) == ("1", "1.0", "True", "0.0", "-0.0")


def test_memoised_compile_and_encoding_equal_fresh_ones() -> None:
    """Every genome encoded with warm memos (other genomes' layers remembered) gives the same
    tensors, shapes and costs as encoded alone from empty memos; errors are the same too."""
    from ml.arch.compiler import BACKBONE_MEMO, LAYER_MEMO
    from ml.encoding.encoder import GenomeEncoder

    texts = _sample()
    warm = GenomeEncoder()
    hits_before = LAYER_MEMO.hits + BACKBONE_MEMO.hits
    outcomes = []
    for text in texts:
        try:
            enc = warm.encode(text)
            outcomes.append((enc, _tensors(enc.to_data("combined"))))
        except GenomeError as exc:
            outcomes.append((None, exc.to_dict()))
    assert LAYER_MEMO.hits + BACKBONE_MEMO.hits > hits_before
    for text, (enc, expected) in zip(texts, outcomes):
        _clear_memos()
        try:
            fresh = GenomeEncoder().encode(text)
        except GenomeError as exc:
            assert enc is None and exc.to_dict() == expected
            continue
        assert enc is not None and _tensors(fresh.to_data("combined")) == expected
        for a, b in zip(enc.network.layers, fresh.network.layers):
            assert (a.in_shape, a.out_shape, a.parameter_count, a.macs,
                    a.activation_elements, a.weights) == (
                b.in_shape, b.out_shape, b.parameter_count, b.macs, b.activation_elements,
                b.weights)
            assert repr(a.module) == repr(b.module)
        assert enc.summary() == fresh.summary()
        modules = [id(m) for m in enc.network.modules]
        assert len(modules) == len(set(modules))  # no module twice in one network


def test_compile_memos_stay_within_their_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from ml.arch import compiler
    from ml.genome import load

    small = Memo(4)
    monkeypatch.setattr(compiler, "LAYER_MEMO", small)
    for text in real_genomes()[:60]:
        try:
            compiler.compile_genome(load(text))
        except GenomeError:
            pass
        assert len(small) <= 4
    assert 0 < len(compiler.BACKBONE_MEMO) <= compiler.BACKBONE_MEMO.maxsize


def test_path_memo_rows_equal_the_plain_block() -> None:
    from ml.encoding.encoder import GenomeEncoder
    from ml.features import paths
    from ml.features import vectors as F

    encoder = GenomeEncoder()
    records = []
    for text in _sample():
        try:
            records.append(encoder.encode(text).to_data("combined"))
        except GenomeError:
            pass
    plain = paths._path_block(records)
    _clear_memos()
    first = paths.path_block(records[:50])       # cold, with repeated structures
    again = paths.path_block(records[::-1])       # partly remembered, another order
    assert np.array_equal(first.view(np.int64), plain[:50].view(np.int64))
    assert np.array_equal(again.view(np.int64), plain[::-1].view(np.int64))
    expected = np.concatenate([F._genome_vector_block(records), F._op_histogram_block(records),
                               F._hyperparam_block(records), plain], axis=1)
    assert np.array_equal(F.tabular_features(records).view(np.int64), expected.view(np.int64))
    assert len(paths.PATH_MEMO) <= paths.PATH_MEMO.maxsize
    assert not paths.PATH_MEMO.get(paths._structure_key(records[0])).flags.writeable


def test_composed_path_rows_equal_the_sweep() -> None:
    """Rows composed from per-backbone tables (records carrying ``layer_segments``) are the
    sweep's bits on real, bred and sampled genomes: capped path counts (DenseNet), segments
    with sources of their own (ConvNeXt, Swin), genomes without layers. A record whose
    segments do not match its graph is swept instead."""
    from ml.encoding.encoder import GenomeEncoder
    from ml.features import paths

    encoder = GenomeEncoder()
    records, builders = [], set()
    for text in _sample():
        try:
            encoded = encoder.encode(text)
        except GenomeError:
            continue
        builders.update(b for b, _, _ in encoded.layer_segments if b is not None)
        records.append(encoded.to_data("combined", layer_segments=encoded.layer_segments))
    swept = paths._path_block(records)
    composed = [paths._composed_summary(r) for r in records]
    assert all(c is not None for c in composed)
    rows = np.stack([np.concatenate([c, paths._edge_pairs(r)]) for c, r in zip(composed, records)])
    assert np.array_equal(rows.view(np.int64), swept.view(np.int64))
    count = swept[:, 2 * paths._PATH_COLUMNS]  # log1p of the capped path count
    assert (count == np.log1p(paths._PATH_COUNT_CAP)).any()
    assert any(b.startswith(("convnext", "swin")) for b in builders)
    assert any(b.startswith("densenet") for b in builders)
    _clear_memos()
    assert np.array_equal(paths.path_block(records).view(np.int64), swept.view(np.int64))

    # Tables built ahead from the variants (warm_process) are the ones genomes need.
    from ml.arch.backbones import cached_variants

    paths._LAYER_PATHS.clear()
    assert paths.warm_layer_paths() == len(cached_variants())
    again = [paths._composed_summary(r) for r in records]
    assert len(paths._LAYER_PATHS) == len(cached_variants())
    assert all(np.array_equal(a, c) for a, c in zip(again, composed))

    inner = next(i for i, r in enumerate(records)
                 if any(b and b.startswith("resnet") for b, _, _ in r.layer_segments))
    lying = records[inner].clone()  # a backbone node of another type than its variant's
    start = next(a for b, a, _ in lying.layer_segments if b and b.startswith("resnet"))
    lying.node_type[start + 5] = (lying.node_type[start + 5] + 1) % paths.NUM_NODE_TYPES
    assert paths._composed_summary(lying) is None
    _clear_memos()
    assert np.array_equal(paths.path_block([lying]).view(np.int64),
                          paths._path_block([lying]).view(np.int64))


def _same_genome(a: object, b: object) -> bool:
    """Equal, with Python's int/float/bool distinction and the codec list (not compared by
    ``==``) included."""
    return repr(a) == repr(b) and repr(a.codec_layer_list) == repr(b.codec_layer_list)


def test_one_pass_evaluation_equals_parse_then_evaluate_or_declines() -> None:
    """``evaluate_fast`` (what ``load`` runs first) gives ``evaluate(parse(text))`` exactly, or
    None: on real, sampled and bred genomes, on damaged strings, and where evaluation fails
    (then the exact path raises the error)."""
    from ml.genome import evaluate, load, parse
    from ml.genome.fastpath import evaluate_fast

    texts = _sample() + list(seed_genomes())
    for text in texts:
        fast = evaluate_fast(text)
        assert fast is not None, text[:80]
        assert _same_genome(fast, evaluate(parse(text), text))
    rng = random.Random(1)
    alphabet = "(), .0123456789eE+-_abxyzINTrueFals\t\n"
    declined = answered = 0
    for _ in range(3000):
        chars = list(rng.choice(texts))
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(chars))
            op = rng.random()
            if op < 0.33:
                del chars[i]
            elif op < 0.66:
                chars.insert(i, rng.choice(alphabet))
            else:
                chars[i] = rng.choice(alphabet)
        damaged = "".join(chars)
        fast = evaluate_fast(damaged)
        try:
            expected = evaluate(parse(damaged), damaged)
        except GenomeError:
            assert fast is None, damaged  # every error comes from the exact path
            declined += 1
            continue
        if fast is not None:
            answered += 1
            assert _same_genome(fast, expected)
    assert declined > 1000 and answered > 100
    for odd in ("", "   ", "RetinaNet_Head(IN0)", "x" * 10, "RetinaNet_Head(1e-5)", "\u0663", 42):
        assert evaluate_fast(odd) is None
    base = real_genomes()[0]
    # Evaluation errors: an overflowing product, a non-finite float, an enum index out of range.
    huge = "mul(" * 250 + "99999999999999999999" + ", 99999999999999999999)" * 250
    for bad in (_with_first_weight(base, huge),
                _with_first_weight(base, "mul(1" + "0" * 300 + ".0, 1" + "0" * 300 + ".0)")):
        assert evaluate_fast(bad) is None
        with pytest.raises(GenomeError) as info:
            load(bad)
        assert info.value.code in ("NUMERIC_OVERFLOW", "NON_FINITE_VALUE")


def _with_first_weight(genome: str, expression: str) -> str:
    """``genome`` with its head's first loss weight replaced by ``expression`` (the weights
    follow the scheduler call, the head's third argument)."""
    from ml.genome import parse

    root = parse(genome)
    start = root.args[3].offset
    depth, end = 0, start
    while True:  # the end of the first weight's expression
        ch = genome[end]
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0:
            break
        end += 1
    return genome[:start] + expression + genome[end:]


def test_load_reports_the_same_errors_as_before() -> None:
    from ml.genome import load
    from ml.genome.parser import parse

    text = real_genomes()[0]
    for damaged in (text[:-1], text + ")", text.replace("(", "((", 1), text[:50],
                    text.replace("IN0", "IN1"), 42):
        with pytest.raises(GenomeError) as fast:
            load(damaged)
        with pytest.raises(GenomeError) as slow:
            parse(damaged)
        assert fast.value.to_dict() == slow.value.to_dict()
    with pytest.raises(GenomeError) as info:
        load(text, max_length=10)
    assert info.value.code == "GENOME_TOO_LONG"


def test_skipping_meta_initialisation_changes_no_compile_and_no_real_weight() -> None:
    """ml.arch.meta_init: every genome encodes to the same tensors, costs and errors with the
    meta initialisers skipped as with torch's own; and weights of real tensors are initialised
    exactly as torch does (same seed, same values)."""
    from torch import nn

    from ml.arch import heads, meta_init
    from ml.encoding.encoder import GenomeEncoder

    def encode_all() -> list:
        _clear_memos()
        heads.head_parameter_count.cache_clear()
        encoder, out = GenomeEncoder(), []
        for text in _sample():
            try:
                enc = encoder.encode(text)
                out.append((_tensors(enc.to_data("combined")), enc.summary()))
            except GenomeError as exc:
                out.append(exc.to_dict())
        return out

    def real_weights() -> list[torch.Tensor]:
        torch.manual_seed(0)
        modules = [nn.Conv2d(3, 8, 3), nn.Linear(5, 4), nn.Embedding(7, 3), nn.GroupNorm(2, 8)]
        return [p.detach().clone() for m in modules for p in m.parameters()]

    assert meta_init.installed()
    skipped, weights = encode_all(), real_weights()
    meta_init.uninstall()
    try:
        assert not meta_init.installed()
        assert encode_all() == skipped
        for a, b in zip(real_weights(), weights):
            assert torch.equal(a, b)
    finally:
        meta_init.install()
    assert weights[0].abs().sum() > 0


def test_warm_up_freezes_the_long_lived_heap_for_the_collector() -> None:
    """``warm_up(freeze_heap=True)`` (the service and its encoder processes): the built
    backbones leave the cyclic collector's view, so full collections stop re-walking them; and
    garbage made afterwards is still collected. In a subprocess: freezing is process-wide."""
    import subprocess
    import sys

    script = """
import gc, weakref
from ml.arch.backbones import all_builders, get_variant, warm_up
builder = sorted(all_builders())[0]
warm_up([builder], freeze_heap=True)
variant = get_variant(all_builders()[builder], builder)
tracked = {id(o) for o in gc.get_objects()}
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
assert id(variant.part) not in tracked and id(variant.graph_module) not in tracked
class Node: pass
a, b = Node(), Node(); a.other, b.other = b, a
gone = weakref.ref(a); del a, b
gc.collect()
assert gone() is None
print("ok", gc.get_freeze_count())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-2000:]


def test_head_parameter_counts_equal_built_ones() -> None:
    """The closed form of a head's parameter count is what building the head counts, for
    every head and channel counts far apart; where the build fails (FCOS's GroupNorm(32) on
    33 channels), the count fails the same way."""
    from ml.arch import heads

    for head in ("RetinaNet_Head", "FasterRCNN_Head", "FCOS_Head"):
        assert heads._parameter_polynomial(head) is not None
        step = heads._CHANNEL_MULTIPLE.get(head, 1)
        for c in sorted({step, 2 * step, 7 * step, 37 * step, 96 * step, 2048 - 2048 % step}):
            heads.head_parameter_count.cache_clear()
            assert heads.head_parameter_count(head, c) == heads._built_parameter_count(head, c)
    with pytest.raises(ValueError, match="divisible"):
        heads.head_parameter_count("FCOS_Head", 33)
    with pytest.raises(ValueError, match="unknown head"):
        heads.head_parameter_count("Nope_Head", 64)
