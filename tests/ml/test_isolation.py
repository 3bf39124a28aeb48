"""Whatever a genome string holds, it fails alone: the numbers of real genomes mutated to huge,
zero, int64-edge and long-digit values, at every entry point of the core (load, compile, encode,
hash, summary, Data), the CLI (genome check, encode, predict) and the dataset build."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml.arch.compiler import compile_genome
from ml.encoding.encoder import GenomeEncoder
from ml.errors import ERROR_CODES, GenomeError
from ml.genome import canonical_hash, individual_hash, load
from ml.genome.lexer import NUMBER, tokenize
from tests.conftest import REPO, TRAIN_CSV, train_rows

REAL = [r["genome"] for r in train_rows()[:60]]
EDGE_NUMBERS = ["0", "1", "0.0", "3.0", "7", "257", "4095", "4096", "4097", "65536",
                "4294967296", "9223372036854775807", "9223372036854775808",
                "18446744073709551616", "1" + "0" * 30, "9" * 309, "9" * 4300, "9" * 4301,
                "1e308", "1e309", "1.7976931348623157e308", "99999.5", "0.5", "-1", "-0",
                "00000000000000000000001"]
NUMBERS = st.one_of(st.sampled_from(EDGE_NUMBERS),
                    st.integers(0, 2 ** 80).map(str),
                    st.floats(0, 1e300, allow_nan=False).map(repr))
ENCODER = GenomeEncoder()


def number_spans(text: str) -> list[tuple[int, int]]:
    return [(t.offset, t.offset + len(t.text)) for t in tokenize(text) if t.kind == NUMBER]


@st.composite
def mutated_genomes(draw: st.DrawFn) -> str:
    """A real genome with 1 to 4 of its numbers replaced by extreme ones."""
    text = draw(st.sampled_from(REAL))
    spans = number_spans(text)
    chosen = sorted(draw(st.lists(st.sampled_from(spans), min_size=1, max_size=4, unique=True)),
                    reverse=True)
    for start, stop in chosen:
        text = text[:start] + draw(NUMBERS) + text[stop:]
    return text


@st.composite
def mutated_layer_genes(draw: st.DrawFn) -> str:
    """A real genome with one layer argument (a direct gene, not under a helper) replaced by an
    extreme integer or float: the values that reach torch constructors."""
    from ml.genome import parse, to_string
    from ml.genome.tree import Call, Literal

    root = parse(draw(st.sampled_from(REAL)))
    chain, node = [], root.args[0]
    while isinstance(node, Call):
        chain.append(node)
        node = node.args[0]
    layer = draw(st.sampled_from([c for c in chain if len(c.args) > 1] or [root]))
    i = draw(st.integers(1, len(layer.args) - 1))
    value = draw(st.one_of(st.sampled_from([0, 1, 4096, 4097, 2 ** 31, 2 ** 32, 2 ** 63 - 1,
                                            2 ** 63, 2 ** 64, 10 ** 30, 10 ** 300, 10 ** 4000]),
                           st.integers(0, 2 ** 70), st.floats(0, 1e308, allow_nan=False)))
    layer.args[i] = Literal(value, layer.offset)
    return to_string(root)


def assert_isolated(text: str) -> None:
    """Every core entry point gives a result or a GenomeError with a specific code."""
    def expect(step):  # type: ignore[no-untyped-def]
        try:
            return step()
        except GenomeError as exc:
            assert exc.code in ERROR_CODES and exc.code != "INTERNAL_ERROR", exc
            assert len(exc.message) < 500, exc.message[:200]
            json.dumps(exc.to_dict(), allow_nan=False)
            return None

    genome = expect(lambda: load(text))
    if genome is not None:
        assert len(expect(lambda: canonical_hash(genome)) or "x" * 64) == 64
        expect(lambda: individual_hash(genome))
        expect(lambda: compile_genome(genome))
    encoded = expect(lambda: ENCODER.encode(text))
    if encoded is not None:
        assert genome is not None  # the encoder never accepts what load refuses
        json.dumps(expect(encoded.summary), allow_nan=False)
        data = expect(lambda: encoded.to_data("combined"))
        assert data is not None and data.num_nodes == encoded.num_nodes
        for key in ("hyperparams", "node_shape", "model_info", "training", "global_features"):
            assert torch.isfinite(data[key]).all(), key  # features a model can take


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_genomes())
def test_mutated_numbers_fail_alone_at_every_entry_point(text):
    assert_isolated(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_layer_genes())
def test_extreme_layer_genes_fail_alone_at_every_entry_point(text):
    assert_isolated(text)


def _bad_genomes() -> list[str]:
    """One of each class the issue reproduced on main, inside real genomes."""
    base = REAL[0]
    start, stop = number_spans(base)[0]
    out = []
    for number in ("100000000000000000000", "9223372036854775807", "9" * 4300, "4294967296"):
        out.append(base[:start] + number + base[stop:])
    # a channel gene of 4294967296 in a conv, and a 4,300-digit product under a helper
    out.append("FasterRCNN_Head(LazyConv2d(IN0, 4294967296, 3, 3, 1, 1, 0, 0, 0, 1, 1, 1), "
               "Adam(0.5, 0.5, False), StepLR(2, 0.5), 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)")
    big = "9" * 4300
    out.append(f"FasterRCNN_Head(LazyConv2d(IN0, toChannel(mul({big}, {big})), 3, 3, 1, 1, 0, 0, "
               f"0, 1, 1, 1), Adam(0.5, 0.5, False), StepLR(2, 0.5), 0.1, 0.1, 0.1, 0.1, 0.1, "
               f"0.1, 0.1)")
    return out


def mixed_file(tmp_path) -> tuple[str, list[bool]]:
    """Good and bad genomes interleaved; returns the path and which lines are good."""
    good = REAL[1:4]
    bad = _bad_genomes()
    lines, ok = [], []
    for i, text in enumerate(bad):
        lines.append(good[i % len(good)])
        ok.append(True)
        lines.append(text)
        ok.append(False)
    path = tmp_path / "mixed.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path), ok


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def test_cli_genome_check_and_encode_fail_only_the_bad_lines(tmp_path):
    path, ok = mixed_file(tmp_path)
    for command in (("genome", "check", path), ("encode", path)):
        proc = cli(*command)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        items = [json.loads(line) for line in proc.stdout.splitlines()]
        assert [i["index"] for i in items] == list(range(len(ok)))
        assert [i["ok"] for i in items] == ok
        for item in items:
            if not item["ok"]:
                assert item["error"]["code"] not in ("INTERNAL_ERROR", None), item["error"]


def test_cli_predict_fails_only_the_bad_lines(tmp_path, capsys):
    from ml.cli import main
    from ml.datasets.labels import DEFAULT_METRICS
    from ml.datasets.records import load_csv
    from ml.train import fit_predictor, save_bundle

    records, _ = load_csv(TRAIN_CSV, DEFAULT_METRICS)
    model, _ = fit_predictor(records[:80], "trees", {"n_estimators": 20})
    bundle = save_bundle(model, tmp_path / "bundle")
    path, ok = mixed_file(tmp_path)
    assert main(["predict", "--model", str(bundle), path]) == 1
    items = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [i["ok"] for i in items] == ok
    assert all(i["predictions"] for i in items if i["ok"])
    assert all(i["error"]["code"] != "INTERNAL_ERROR" for i in items if not i["ok"])


def test_dataset_build_logs_and_skips_each_bad_row(tmp_path):
    import csv

    from ml.datasets.build import BuildOptions, build_dataset

    rows = list(train_rows()[:12])
    bad = _bad_genomes()
    source = tmp_path / "mixed.csv"
    with open(source, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow(row)
            if i < len(bad):
                writer.writerow({**row, "genome": bad[i]})
    out = tmp_path / "graphs"
    manifest = build_dataset(BuildOptions(source=source, out=out, workers=1, progress=False))
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == len(bad) and manifest["counts"]["rows"] == len(rows) + len(bad)
    assert all(e["code"] != "INTERNAL_ERROR" for e in errors)
    assert manifest["counts"]["ok"] + manifest["counts"].get("failed_evaluation", 0) == len(rows)


@pytest.mark.parametrize("stage", ["featurize", "predict_features"])
def test_a_model_bug_on_one_row_fails_that_item_only(stage):
    """A predictor that raises for one genome's row: run_isolated retries item by item."""
    import numpy as np

    from ml.inference import predict_chunk, run_isolated
    from ml.models.base import Prediction

    class Flaky:
        metrics = ("a",)

        def featurize(self, records):
            if any(r == "bad" for r in records):
                raise RuntimeError("boom")
            return [np.ones(2) for _ in records]

        def predict_features(self, x):
            if (x < 0).any():
                raise RuntimeError("Storage size calculation overflowed")
            return Prediction(x[:, :1], None, np.zeros(len(x)), self.metrics)

    model = Flaky()
    if stage == "featurize":
        kept, rows, failed = run_isolated(model.featurize, ["ok", "bad", "ok"], "featurising")
        assert kept == [0, 2] and len(rows) == 2 and set(failed) == {1}
        assert failed[1]["code"] == "INTERNAL_ERROR"
    else:
        x = [np.ones(2), -np.ones(2), 2 * np.ones(2)]
        result = predict_chunk(model, x, rows=True)
        assert result.kept == [0, 2] and result.mean[:, 0].tolist() == [1.0, 2.0]
        assert result.failed[1]["code"] == "INTERNAL_ERROR"
        assert "Storage size" in result.failed[1]["message"]
