"""The CLI contract, run as a real subprocess on the real data."""
from __future__ import annotations

import json
import subprocess
import sys

import torch

from tests.conftest import REPO, SEEDS_TXT, TRAIN_CSV, train_rows


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml.cli", *args], cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=600)


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_genome_check_on_the_training_csv():
    proc = run("genome", "check", str(TRAIN_CSV))
    assert proc.returncode == 0, proc.stderr
    items = lines(proc.stdout)
    assert [i["index"] for i in items] == list(range(len(train_rows())))
    for item, row in zip(items, train_rows()):
        assert set(item) == {"index", "ok", "error", "canonical_hash", "individual_hash"}
        assert item["ok"] and item["error"] is None and len(item["canonical_hash"]) == 64
    matches = sum(i["individual_hash"] == r["individual_hash"] for i, r in zip(items, train_rows()))
    assert matches >= len(items) - 6  # the documented libm ulp rows


def test_genome_check_reports_bad_lines_and_goes_on(tmp_path):
    good = SEEDS_TXT.read_text().splitlines()[0]
    path = tmp_path / "mixed.txt"
    mixed = [good, good.replace("ShuffleNet_V2", "ShuffleNet_V9"), "", good[:50]]
    path.write_text("\n".join(mixed))
    proc = run("genome", "check", str(path))
    assert proc.returncode == 1
    items = lines(proc.stdout)
    assert [i["ok"] for i in items] == [True, False, False]
    assert items[1]["error"]["code"] == "UNKNOWN_PRIMITIVE"
    assert items[1]["error"]["offset"] == good.index("ShuffleNet_V2")
    assert items[2]["error"]["code"] == "UNEXPECTED_END"
    assert items[1]["canonical_hash"] is None


def test_genome_sample_is_seeded_and_compiles():
    a = run("genome", "sample", "-n", "5", "--seed", "7")
    b = run("genome", "sample", "-n", "5", "--seed", "7")
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout and len(a.stdout.splitlines()) == 5
    check = run("genome", "check", "-", stdin=a.stdout)
    assert check.returncode == 0 and all(i["ok"] for i in lines(check.stdout))


def test_encode_prints_the_contract_fields():
    proc = run("encode", str(SEEDS_TXT), "--encoding", "onehot")
    assert proc.returncode == 0, proc.stderr
    items = lines(proc.stdout)
    assert len(items) == 25
    keys = {"index", "ok", "error", "canonical_hash", "num_nodes", "num_edges", "node_ops",
            "node_module_types", "edges", "model_info", "global"}
    for item in items:
        assert set(item) == keys
        assert item["num_nodes"] == len(item["node_ops"]) == len(item["node_module_types"])
        assert item["node_ops"][0] == "placeholder" and item["node_ops"][-1] == "output"
        assert all(t is None or t.count(".") >= 2 for t in item["node_module_types"])
        assert len(item["model_info"]) == 34


def test_encode_out_writes_data_objects(tmp_path):
    out = tmp_path / "graphs.pt"
    proc = run("encode", str(SEEDS_TXT), "--encoding", "combined", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    graphs = torch.load(out, weights_only=False)
    assert len(graphs) == 25
    assert graphs[0].x.dtype == torch.int64 and graphs[0].hyperparams.shape[1] == 86


def test_missing_file_is_a_clean_error():
    proc = run("genome", "check", "/nonexistent/genomes.txt")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
