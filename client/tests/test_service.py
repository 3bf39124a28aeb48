"""The light client against a real ``nas-surrogate serve``: the pipeline's calls on its
``Surrogate`` with DEAP individuals, its downselect by trust-weighted counts, SSI in one call,
ask/tell, and a run directory written exactly as the pipeline writes one."""
from __future__ import annotations

import csv
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import KEY, URL, needs_service

pytestmark = needs_service

OBJECTIVES = {"uw_val_epoch_loss": -1.0, "ciou_loss": -1.0, "average_precision": 1.0}
METRIC_COLUMNS = ["train_epoch_loss", "uw_val_epoch_loss", "val_epoch_loss", "iou_loss",
                  "giou_loss", "diou_loss", "ciou_loss", "center_loss", "size_loss", "obj_loss",
                  "precision", "recall", "f1_score", "average_precision", "true_positives",
                  "false_positives", "false_negatives"]
BROKEN = "RetinaNet_Head(ShuffleNet_V2(IN0, 1, dummyOp(1)), Adamax(0.1, 0.9, 0.99)"


@pytest.fixture(scope="module")
def deap_types():
    from deap import base, creator

    if not hasattr(creator, "FitnessMulti"):
        creator.create("FitnessMulti", base.Fitness, weights=tuple(OBJECTIVES.values()))
    if not hasattr(creator, "Individual"):
        creator.create("Individual", str, fitness=creator.FitnessMulti)
    return creator


@pytest.fixture(scope="module")
def surrogate():
    from nas_surrogate_client import ServiceSurrogate

    return ServiceSurrogate(URL, api_key=KEY)


def test_set_fitnesses_four_arguments_and_the_pipelines_downselect(surrogate, deap_types, rows):
    from deap import tools

    population = [deap_types.Individual(r["genome"]) for r in rows[100:130]]
    population.append(deap_types.Individual(BROKEN))
    invalid, valid = surrogate.set_fitnesses([0, 0, 0, 0], None, None, population)
    # a deep copy, as the pipeline's: the caller's individuals are untouched
    assert not any(ind.fitness.valid for ind in population)
    assert len(invalid) + len(valid) == len(population) and valid
    assert [str(i) for i in invalid + valid if str(i) == BROKEN] == [BROKEN]
    for ind in invalid:
        assert ind.fitness.values == (300.0, 300.0, -300.0)
    for ind in valid:
        assert all(-300 <= v <= 300 for v in ind.fitness.values)
    # the trusts are the service's, measured with the pipeline's protocol on the active model
    trust = surrogate.trust_report()["pipeline_trust"]
    assert trust["protocol"].startswith("surrogate-usage")
    assert surrogate.cls_trust == pytest.approx(trust["cls_trust"])
    assert surrogate.reg_trust == pytest.approx(trust["reg_trust"])
    assert 0.0 <= surrogate.cls_trust <= 1.0 and 0.0 <= surrogate.reg_trust <= 1.0
    assert surrogate.calc_trust([0, 0, 0, 0], None, None, None, None) == \
        (surrogate.cls_trust, surrogate.reg_trust)
    reg_trust, indices = surrogate.optimize_trust(None, None, None, None)
    assert reg_trust == surrogate.reg_trust and len(indices) == 3
    assert {"name", "validation_subset"} <= set(surrogate.models[0])
    assert {"name", "validation_subset"} <= set(surrogate.classifier_models[0])
    # the pipeline's downselect, with its own counts
    P = 10
    num_tw = int(surrogate.reg_trust * surrogate.cls_trust * P)
    num_utw = int((1 - surrogate.reg_trust) * surrogate.cls_trust * P)
    pool = invalid + valid if len(valid) < P * surrogate.cls_trust else valid
    trusted = tools.selNSGA2(list(pool), num_tw)
    rest = [i for i in valid if i not in trusted]
    untrusted = random.Random(0).sample(rest, min(num_utw, len(rest)))
    chosen = trusted + untrusted
    assert len(trusted) == num_tw and len({str(i) for i in chosen}) == len(chosen)
    # NSGA-II's picks are non-dominated by any unpicked valid individual's predicted fitness
    if trusted:
        first = tools.sortNondominated(list(pool), len(pool), first_front_only=True)[0]
        assert any(str(t) in {str(f) for f in first} for t in trusted)


def test_ssi_in_one_call_returns_the_pipelines_dict(surrogate, deap_types, rows):
    pool = {r["individual_hash"]: deap_types.Individual(r["genome"]) for r in rows[100:120]}
    started = time.perf_counter()
    new = surrogate.simulated_surrogate_injection_new(pool, population_size=10, pool_size=200,
                                                      inner_generations=2, parents_k=6)
    seconds = time.perf_counter() - started
    assert len(new) == 8, new  # int(0.8 * P)
    assert all(isinstance(ind, deap_types.Individual) for ind in new.values())
    assert not {str(i) for i in new.values()} & {str(i) for i in pool.values()}
    assert all(ind.fitness.valid for ind in new.values())
    assert seconds < 60


def test_propose_shows_progress_with_a_callback_or_a_bar(client, rows, capsys):
    population = [r["genome"] for r in rows[100:110]]
    seen = []
    answer = client.propose(population, k=3, pool_size=100, inner_generations=1, seed=5,
                            progress=seen.append)
    assert len(answer["items"]) == 3
    assert seen[-1]["status"] == "succeeded" and seen[-1]["seconds"] >= 0
    assert all(s["status"] == "running" for s in seen[:-1])
    client.propose(population, k=3, pool_size=100, inner_generations=1, seed=5, progress=True)
    assert "propose" in capsys.readouterr().err  # the tqdm bar, on stderr


def test_ask_never_proposes_a_pending_genome_and_tell_flush_appends(client, rows):
    population = [r["genome"] for r in rows[100:110]]
    options = {"pool_size": 100, "inner_generations": 1, "parents_k": 4, "seed": 3}
    first = client.ask(3, population=population, **options)
    assert len(first) == 3
    again = client.ask(3, population=population, pending=first, **options)
    assert len(again) == 3 and not set(again) & set(first)
    later = [r for r in rows if float(r["generation"]) == 9.0]  # never in the run below
    client.tell(later[0]["genome"], {m: float(later[0][m]) for m in METRIC_COLUMNS},
                generation=9)
    client.tell(later[1]["genome"], failed=True, generation=9)
    seen = []
    started = time.perf_counter()
    answer = client.flush(progress=seen.append)
    assert time.perf_counter() - started < 2.0  # the back-off starts short
    assert answer["added"] == 2 and answer["job"]["status"] == "succeeded"
    assert seen and seen[-1]["status"] == "succeeded" and client.pending == []
    assert client.flush() is None


def _write_run(folder: Path, rows: list[dict[str, str]]) -> dict[str, object]:
    """A run directory exactly as pipeline.py writes one, from the real CSV's rows: the
    evaluation inputs per generation, per individual a metrics.csv of several epochs whose
    best average_precision is the real row, a genome with no metrics.csv, one with the
    pipeline's own failure file, one malformed file, and out.csv."""
    by_gen: dict[int, list[dict[str, str]]] = {}
    for r in rows:
        by_gen.setdefault(int(float(r["generation"])), []).append(r)
    (folder / "eval_inputs").mkdir(parents=True)
    expected: dict[str, object] = {"best": {}, "missing": None, "failure_file": None,
                                   "malformed": None}
    out_rows = []
    for gen, members in sorted(by_gen.items()):
        with open(folder / "eval_inputs" / f"eval_input_gen{gen}.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["gen", "hash", "genome"])
            for r in members:
                writer.writerow([gen, r["individual_hash"], r["genome"]])
        for r in members:
            d = folder / f"generation_{gen}" / r["individual_hash"]
            failed = float(r["uw_val_epoch_loss"]) >= 1e5 or math.isnan(
                float(r["average_precision"]))
            if expected["missing"] is None:
                expected["missing"] = r["individual_hash"]  # no metrics.csv: a failure
                continue
            d.mkdir(parents=True)
            if failed or expected["failure_file"] is None:
                expected["failure_file"] = expected["failure_file"] or r["individual_hash"]
                with open(d / "metrics.csv", "w", newline="") as fh:
                    writer = csv.writer(fh)
                    writer.writerow(list(OBJECTIVES))
                    writer.writerow([1000000 if w < 0 else -1000000 for w in OBJECTIVES.values()])
                continue
            if expected["malformed"] is None:
                expected["malformed"] = r["individual_hash"]
                (d / "metrics.csv").write_text("epoch_num,average_precision\n1,0.1\n2,oops\n")
                continue
            best = {m: float(r[m]) for m in METRIC_COLUMNS}
            epochs = []
            for e in range(1, 5):  # the real row is epoch 3; the others are worse in AP
                row = dict(best) if e == 3 else {m: v * (1.0 + 0.1 * e) for m, v in best.items()}
                if e != 3:
                    row["average_precision"] = best["average_precision"] * 0.5 - 0.01 * e
                epochs.append({"epoch_num": e, **row})
            with open(d / "metrics.csv", "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=["epoch_num", *METRIC_COLUMNS])
                writer.writeheader()
                writer.writerows(epochs)
            expected["best"][r["individual_hash"]] = best
            out_rows.append({"gen": gen, "hash": r["individual_hash"], "genome": r["genome"],
                             **best})
    with open(folder / "out.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["gen", "hash", "genome", *METRIC_COLUMNS])
        writer.writeheader()
        writer.writerows(out_rows)
    return expected


def test_ingest_run_reads_the_pipelines_run_directory(client, rows, tmp_path):
    from nas_surrogate_client.rundir import read_run

    run_rows = [r for r in rows if float(r["generation"]) in (6.0, 7.0)][:24]
    expected = _write_run(tmp_path / "run", run_rows)
    run = read_run(tmp_path / "run")
    by_hash = {s["hash"]: rec for s, rec in zip(run.sources, run.records)}
    for ident, best in expected["best"].items():  # the best epoch, its whole curve
        rec = by_hash[ident]
        assert rec["metrics"] == pytest.approx(best) and len(rec["curve"]) == 4
        assert rec["failed"] is None
    assert by_hash[expected["missing"]]["failed"] is True
    assert by_hash[expected["failure_file"]]["failed"] is True
    assert [(r["hash"], r["error"]["code"]) for r in run.rejected] == \
        [(expected["malformed"], "METRICS_FILE_MALFORMED")]

    answer = client.ingest_run(tmp_path / "run")
    assert answer["added"] == len(run.records) and answer["duplicates"] == 0
    assert answer["job"]["status"] == "succeeded"
    assert [r["hash"] for r in answer["rejected"]] == [expected["malformed"]]
    version = client.dataset(answer["dataset_id"])
    assert version["status"] == "ready"
    out = os.environ.get("CLIENT_TEST_OUT")
    if out:
        Path(out).write_text(json.dumps({"dataset_id": answer["dataset_id"],
                                         "curved": sorted(expected["best"])}))
    # the same run again adds nothing (the console script, as a user runs it)
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    script = Path(sys.executable).parent / "nas-surrogate-client"
    done = subprocess.run([str(script), "ingest", str(tmp_path / "run"), "--url", URL,
                           "--key-file", str(key_file)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    again = json.loads(done.stdout)
    assert again["added"] == 0 and again["job"] is None
    assert again["duplicates"] == len(run.records)
    assert again["dataset_id"] == answer["dataset_id"]
