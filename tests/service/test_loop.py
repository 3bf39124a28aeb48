"""The search loop's contract against real PostgreSQL and Redis: evaluations appended as dataset
versions, promote-if-better training judged on held-out generations, models by name, and the
client the loop calls (on real DEAP individuals). Jobs run in-process through ``run_job``."""
from __future__ import annotations

import csv
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import train_rows

from .conftest import headers, needs_redis

pytestmark = needs_redis

METRIC_COLUMNS = [c for c in train_rows()[0] if c not in ("genome", "generation",
                                                          "individual_hash")]


def records_of(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """CSV rows as the loop sends them: every metric, the generation."""
    out = []
    for row in rows:
        metrics = {}
        for column in METRIC_COLUMNS:
            try:
                value = float(row[column])
            except ValueError:
                value = None
            metrics[column] = value if value is None or value == value else None
        out.append({"genome": row["genome"], "metrics": metrics,
                    "generation": int(float(row["generation"]))})
    return out


def generation(g: int) -> list[dict[str, str]]:
    return [r for r in train_rows() if int(float(r["generation"])) == g]


@pytest.fixture(scope="module")
def early(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Generations 1-2 built into a dataset, and a fast trees model trained on it."""
    from ml.datasets.build import BuildOptions, build_dataset
    from ml.train import fit_predictor, load_training_records, save_bundle

    folder = tmp_path_factory.mktemp("early")
    source = folder / "g12.csv"
    with open(source, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(train_rows()[0]))
        writer.writeheader()
        writer.writerows(generation(1) + generation(2))
    build_dataset(BuildOptions(source=source, out=folder / "graphs", workers=1, progress=False))
    records, info = load_training_records(dataset=folder / "graphs")
    model, _ = fit_predictor(records, "trees", {"n_estimators": 30})
    bundle = save_bundle(model, folder / "bundle", manifest_hash=info["hash"])
    return folder / "graphs", bundle


@pytest.fixture()
def loop(db: str, early: tuple[Path, Path]) -> Iterator[dict[str, Any]]:
    """The app with the early dataset ready and the trees model active as default v1."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from service.config import get_settings
    from service.db import session_scope
    from service.store import datasets as dataset_store
    from service.store import model_registry as registry

    from .conftest import make_key

    graphs, bundle = early
    dataset_id = str(uuid.uuid4())
    with session_scope() as s:
        dataset_store.create_dataset(s, dataset_id=dataset_id, name="g12", source_path="g12",
                                     path=str(graphs), metrics=["uw_val_epoch_loss",
                                                                "ciou_loss", "average_precision",
                                                                "iou_loss", "giou_loss"])
        dataset_store.mark(s, dataset_id, "ready")
        registry.register_version(s, name="default", predictor="trees",
                                  source_path=str(bundle), encoder_version="graph-v2",
                                  metrics=["uw_val_epoch_loss", "ciou_loss",
                                           "average_precision", "iou_loss", "giou_loss"],
                                  training_metrics={}, dataset_id=dataset_id)
        registry.set_alias(s, "default", 1)
    settings = get_settings().model_copy(update={"promote_generations": 2})
    application = create_app(settings)
    application.state.start_reconciler = False
    keys = {scope: make_key([scope]) for scope in ("predict", "train", "admin")}
    with TestClient(application, raise_server_exceptions=False) as client:
        yield {"client": client, "app": application, "keys": keys, "dataset_id": dataset_id,
               "settings": settings}


def _run(job_id: str, settings: Any) -> str:
    from worker.runner import run_job
    return run_job(job_id, settings)


def test_evaluations_make_a_version_and_bad_records_fail_alone(loop):
    c, key = loop["client"], loop["keys"]["train"]
    new = records_of(generation(3))
    repeat = {**records_of(generation(1)[:1])[0], "generation": 3}
    repeat["metrics"]["ciou_loss"] = (repeat["metrics"]["ciou_loss"] or 0) + 0.25
    body = {"dataset_id": loop["dataset_id"],
            "records": new + [repeat, {"genome": "RetinaNet_Head(", "generation": 3}]}
    r = c.post("/evaluations", json=body, headers=headers(key, **{"Idempotency-Key": "g3"}))
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["parent_id"] == loop["dataset_id"] and out["added"] == len(new) + 1
    assert out["duplicates"] == 1
    assert [(x["index"], x["error"]["code"]) for x in out["rejected"]] == \
        [(len(new) + 1, "UNEXPECTED_END")]
    again = c.post("/evaluations", json=body, headers=headers(key, **{"Idempotency-Key": "g3"}))
    assert again.status_code == 200 and again.json()["dataset_id"] == out["dataset_id"]
    pending = c.post("/evaluations", json={**body, "dataset_id": out["dataset_id"]},
                     headers=headers(key))
    assert pending.status_code == 409 and pending.json()["error"]["code"] == "DATASET_NOT_READY"
    assert _run(out["job"]["id"], loop["settings"]) == "succeeded"
    version = c.get(f"/datasets/{out['dataset_id']}", headers=headers(key)).json()
    parent = c.get(f"/datasets/{loop['dataset_id']}", headers=headers(key)).json()
    assert version["status"] == "ready" and version["lineage"] == [loop["dataset_id"]]
    assert version["counts"]["rows"] == len(generation(1) + generation(2)) + len(new) + 1
    assert version["counts"]["duplicates"] == 1
    assert version["label_noise"]["genomes_measured_more_than_once"] == 1
    assert parent["counts"] is None or parent["counts"]["rows"] == \
        len(generation(1) + generation(2))
    too_many = {"dataset_id": loop["dataset_id"], "records": [new[0]] * 10_001}
    r = c.post("/evaluations", json=too_many, headers=headers(key))
    assert r.status_code == 422


def test_retrain_queues_one_promote_if_better_training(loop, early):
    c, key = loop["client"], loop["keys"]["train"]
    champion = champion_trained_with(loop, early[1], {"n_estimators": 30})  # a cheap recipe
    body = {"dataset_id": loop["dataset_id"], "records": records_of(generation(3)),
            "retrain": True}
    out = c.post("/evaluations", json=body, headers=headers(key)).json()
    assert _run(out["job"]["id"], loop["settings"]) == "succeeded"
    version = c.get(f"/datasets/{out['dataset_id']}", headers=headers(key)).json()
    train_id = version["retrain_job_id"]
    job = c.get(f"/jobs/{train_id}", headers=headers(key)).json()
    assert job["params"]["promote"] == "if_better" and job["params"]["predictor"] == "trees"
    assert job["params"]["hyperparameters"] == {"n_estimators": 30}     # the champion's recipe
    assert job["dataset_id"] == out["dataset_id"]
    assert _run(train_id, loop["settings"]) == "succeeded"
    job = c.get(f"/jobs/{train_id}", headers=headers(key)).json()
    model = c.get(f"/models/{job['model_version']}", headers=headers(loop["keys"]["predict"]))
    comparison = model.json()["comparison"]
    # Judged on the champion's own generations (1-2), each held out; the decision, its figures
    # and the policy are on the version, and the alias follows the decision.
    assert comparison["same_recipe"] and comparison["policy"] == "auto"
    assert comparison["champion"]["version"] == champion
    assert comparison["held_out"] == {"generations": [1.0, 2.0],
                                      "data": "the champion's records",
                                      "genomes": len(generation(1) + generation(2))}
    assert [g["generation"] for g in comparison["challenger"]["per_generation"]] == [1.0, 2.0]
    assert comparison["recommended"] == comparison["promoted"]
    assert comparison["promoted"] == comparison["reason"].startswith("better")
    assert model.json()["active"] == comparison["promoted"]
    assert model.json()["lineage"]["dataset_id"] == out["dataset_id"]


def invented(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` records of real genomes with made-up measurements (as issue 28's probe sent)."""
    import random
    rng = random.Random(seed)
    rows = generation(3)[:n]
    return [{"genome": r["genome"], "generation": 3,
             "metrics": {m: rng.uniform(0.0, 1.0) for m in METRIC_COLUMNS}} for r in rows]


def test_twelve_invented_records_do_not_replace_the_champion(loop, early):
    """Issue 28, item 3: 12 made-up records appended with retrain by a train key. The retrained
    version (the same recipe on the champion's data plus them) is not measured better on the
    champion's held-out generations: registered, not active."""
    c, key = loop["client"], loop["keys"]["train"]
    champion = champion_trained_with(loop, early[1], {"n_estimators": 30})  # seconds, not the
    out = c.post("/evaluations", json={"dataset_id": loop["dataset_id"],  # default's minutes
                                       "records": invented(12), "retrain": True},
                 headers=headers(key)).json()
    assert _run(out["job"]["id"], loop["settings"]) == "succeeded"
    train_id = c.get(f"/datasets/{out['dataset_id']}", headers=headers(key)).json()[
        "retrain_job_id"]
    assert _run(train_id, loop["settings"]) == "succeeded"
    job = c.get(f"/jobs/{train_id}", headers=headers(key)).json()
    assert "kept the champion" in job["message"], job["message"]
    predict = headers(loop["keys"]["predict"])
    model = c.get(f"/models/{job['model_version']}", headers=predict).json()
    assert not model["active"] and not model["comparison"]["promoted"]
    assert model["comparison"]["held_out"]["data"] == "the champion's records"
    assert model["comparison"]["champion"]["version"] == champion
    assert c.get("/models", headers=predict).json()["active_version"] == champion


def champion_trained_with(loop: dict[str, Any], bundle: Path,
                          hyperparameters: dict[str, Any]) -> int:
    """A new active version of ``default`` trained (per its job) with ``hyperparameters``: the
    recipe a retraining repeats and the champion's side of the comparison."""
    from service.db import session_scope
    from service.store import jobs as job_store
    from service.store import model_registry as registry

    with session_scope() as s:
        job, _ = job_store.create_job(
            s, kind="train", params={"dataset_id": loop["dataset_id"], "predictor": "trees",
                                     "hyperparameters": hyperparameters},
            principal="key:0", request_sha256="champion")
        row = registry.register_version(
            s, name="default", predictor="trees", source_path=str(bundle),
            encoder_version="graph-v2", metrics=list(METRIC_COLUMNS), training_metrics={},
            job_id=job.id, dataset_id=loop["dataset_id"])
        registry.set_alias(s, "default", row.version)
        return row.version


def test_approve_policy_waits_for_an_admin_in_the_dashboard(loop, early):
    """``SURROGATE_PROMOTION_POLICY=approve``: a challenger the rule recommends (trees over a
    champion that cannot rank) is registered awaiting approval, not serving; a predict key sees
    no approve button, a forged form is refused, and an admin's form activates it."""
    from .test_ui import csrf_of, signed_in

    c, keys = loop["client"], loop["keys"]
    champion = champion_trained_with(loop, early[1], {"n_estimators": 5,   # cannot rank:
                                                      "min_samples_leaf": 100_000})  # 1 leaf
    settings = loop["settings"].model_copy(update={"promotion_policy": "approve"})
    r = c.post("/jobs/train", json={"dataset_id": loop["dataset_id"], "predictor": "trees",
                                    "hyperparameters": {"n_estimators": 30},
                                    "promote": "if_better"}, headers=headers(keys["train"]))
    assert r.status_code == 202, r.text
    assert _run(r.json()["id"], settings) == "succeeded"
    job = c.get(f"/jobs/{r.json()['id']}", headers=headers(keys["train"])).json()
    assert "awaiting approval" in job["message"], job["message"]
    version = job["model_version"]
    model = c.get(f"/models/{version}", headers=headers(keys["predict"])).json()
    comparison = model["comparison"]
    assert comparison["recommended"] and comparison["awaiting_approval"]
    assert not comparison["promoted"] and not model["active"]
    assert comparison["policy"] == "approve" and comparison["champion"]["version"] == champion
    assert c.get("/models", headers=headers(keys["predict"])).json()["active_version"] == \
        champion
    client = signed_in(loop, "predict")
    page = client.get(f"/ui/models/{version}")
    assert page.status_code == 200 and "awaiting approval" in page.text
    assert f"/ui/models/{version}/approve" not in page.text
    assert client.post(f"/ui/models/{version}/approve",
                       data={"csrf": csrf_of(page)}).status_code == 403
    client = signed_in(loop, "admin")
    page = client.get(f"/ui/models/{version}")
    assert f"/ui/models/{version}/approve?name=default" in page.text
    assert client.post(f"/ui/models/{version}/approve",
                       data={"csrf": "stale"}).status_code == 403
    assert c.get("/models", headers=headers(keys["predict"])).json()["active_version"] == \
        champion
    r = client.post(f"/ui/models/{version}/approve?name=default",
                    data={"csrf": csrf_of(page)}, follow_redirects=False)
    assert r.status_code == 303
    model = c.get(f"/models/{version}", headers=headers(keys["predict"])).json()
    assert model["active"] and model["comparison"]["promoted"]
    assert not model["comparison"]["awaiting_approval"]
    assert model["comparison"]["approved_by"].startswith("key:")
    again = client.post(f"/ui/models/{version}/approve?name=default",
                        data={"csrf": csrf_of(page)}, follow_redirects=False)
    assert again.status_code == 409


def test_a_retrained_version_carries_its_trust_figures_and_moves_through_stages(loop,
                                                                                monkeypatch):
    """Issue 29 items 3 and 5: the version a retraining registers has its cross-validated trust
    figures (what the overview, the models page, the comparison and trust_report() show), and
    the job's progress moves through its stages (fit, trust report, comparison) instead of
    sitting at 0 % until it ends."""
    from worker.context import JobContext
    from worker.handlers.append import RETRAIN_CV_FOLDS

    c, key = loop["client"], loop["keys"]["train"]
    out = c.post("/evaluations", json={"dataset_id": loop["dataset_id"], "retrain": True,
                                       "records": records_of(generation(3))},
                 headers=headers(key)).json()
    assert _run(out["job"]["id"], loop["settings"]) == "succeeded"
    train_id = c.get(f"/datasets/{out['dataset_id']}", headers=headers(key)).json()[
        "retrain_job_id"]
    assert c.get(f"/jobs/{train_id}", headers=headers(key)).json()["params"]["cv_folds"] == \
        RETRAIN_CV_FOLDS  # the champion was trained without a report: the default folds
    seen: list[tuple[float, str]] = []
    original = JobContext.progress

    def record(self: Any, fraction: float | None, message: str) -> None:
        original(self, fraction, message)
        seen.append((self._fraction, message))
    monkeypatch.setattr(JobContext, "progress", record)
    assert _run(train_id, loop["settings"]) == "succeeded"
    job = c.get(f"/jobs/{train_id}", headers=headers(key)).json()
    version = c.get(f"/models/{job['model_version']}",
                    headers=headers(loop["keys"]["predict"])).json()
    cv = version["training_metrics"]["cv"]
    assert cv["folds"] == RETRAIN_CV_FOLDS
    for figure in ("trust_spea2_top30", "trust_nsga2_top30", "validity_auc",
                   "kendall_tau_b_ciou_loss"):
        assert isinstance(cv[figure], float), (figure, cv)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0   # never backwards
    messages = " | ".join(m for _, m in seen)
    for stage in ("fitted trees", "cross-validating", "comparing with the champion"):
        assert stage in messages, messages
    inner = {round(f, 3) for f in fractions if 0.0 < f < 1.0}
    assert len(inner) >= 1 + RETRAIN_CV_FOLDS, seen   # members, folds and stages between
    report_plots = version.get("report_plots") or []
    assert any(p.startswith("pred_vs_true_") for p in report_plots), version


def test_a_worse_challenger_is_registered_but_not_activated(loop):
    """A recipe that cannot rank (one-leaf trees: constant predictions) against the trees
    champion on generations 2-3: registered with the comparison, the alias stays."""
    c = loop["client"]
    out = c.post("/evaluations", json={"dataset_id": loop["dataset_id"],
                                       "records": records_of(generation(3))},
                 headers=headers(loop["keys"]["train"])).json()
    assert _run(out["job"]["id"], loop["settings"]) == "succeeded"
    r = c.post("/jobs/train", json={"dataset_id": out["dataset_id"], "predictor": "trees",
                                    "hyperparameters": {"min_samples_leaf": 10_000,
                                                        "n_estimators": 10},
                                    "promote": "if_better"},
               headers=headers(loop["keys"]["train"]))
    assert r.status_code == 202, r.text
    assert _run(r.json()["id"], loop["settings"]) == "succeeded"
    version = c.get(f"/jobs/{r.json()['id']}", headers=headers(loop["keys"]["train"])).json()
    assert "kept the champion" in version["message"]
    model = c.get(f"/models/{version['model_version']}",
                  headers=headers(loop["keys"]["predict"])).json()
    assert not model["active"] and not model["comparison"]["promoted"]
    assert model["comparison"]["reason"] in ("worse on tau", "worse on trust")
    assert model["comparison"]["champion"]["version"] == 1
    assert c.get("/models", headers=headers(loop["keys"]["predict"])).json()[
        "active_version"] == 1
    r = c.post("/jobs/train", json={"dataset_id": out["dataset_id"], "promote": "always"},
               headers=headers(loop["keys"]["train"]))
    assert r.status_code == 403                      # always is an admin decision


def test_two_names_serve_side_by_side(loop, early):
    from service.db import session_scope
    from service.store import model_registry as registry

    c, keys = loop["client"], loop["keys"]
    with session_scope() as s:
        registry.register_version(s, name="other", predictor="trees",
                                  source_path=str(early[1]), encoder_version="graph-v2",
                                  metrics=["uw_val_epoch_loss", "ciou_loss", "average_precision",
                                           "iou_loss", "giou_loss"], training_metrics={})
        registry.set_alias(s, "other", 1)
    genomes = [r["genome"] for r in train_rows()[:5]]
    for spec, name in (("other", "other"), ("other@1", "other"), ("other@active", "other"),
                       ("default@1", "default"), (None, "default")):
        body = {"genomes": genomes, **({"model": spec} if spec else {})}
        r = c.post("/predict", json=body, headers=headers(keys["predict"]))
        assert r.status_code == 200 and r.json()["model_name"] == name, (spec, r.text)
    assert len(loop["app"].state.scorer.models._models) == 2   # both bundles loaded at once
    for spec, code in (("nobody", "MODEL_NOT_FOUND"), ("other@9", "MODEL_NOT_FOUND"),
                       ("other@champion", "MODEL_NOT_FOUND")):
        r = c.post("/predict", json={"genomes": genomes, "model": spec},
                   headers=headers(keys["predict"]))
        assert r.json()["error"]["code"] == code, (spec, r.text)
    listed = c.get("/models", params={"name": "other"}, headers=headers(keys["predict"])).json()
    assert listed["name"] == "other" and listed["count"] == 1 and listed["active_version"] == 1
    r = c.post("/models/1/activate", params={"name": "other"}, headers=headers(keys["admin"]))
    assert r.status_code == 200 and r.json()["name"] == "other"


def test_the_client_speaks_the_loop_protocol(loop):
    """set_fitnesses on real DEAP individuals (the evolution's weights), predict_frame,
    add_evaluations from a DataFrame, trust_report."""
    import pandas as pd
    from deap import base, creator

    from app.client import FAILED_FITNESS, SurrogateClient

    if not hasattr(creator, "LoopFitness"):
        creator.create("LoopFitness", base.Fitness, weights=(-1.0, -1.0, 1.0))
        creator.create("LoopIndividual", str, fitness=creator.LoopFitness)
    genomes = [r["genome"] for r in generation(3)[:8]] + ["Broken(IN0)"]
    population = [creator.LoopIndividual(g) for g in genomes]
    from .conftest import make_key

    loop_key = make_key(["predict", "train"])       # what the README tells the loop to use
    client = SurrogateClient(api_key=loop_key, http=loop["client"], batch_size=4)
    invalid, valid = client.set_fitnesses(population)
    assert invalid[-1] is population[-1] and len(invalid) + len(valid) == len(population)
    position = {id(ind): i for i, ind in enumerate(population)}
    for part in (valid, invalid):                        # each keeps the input order
        assert [position[id(i)] for i in part] == sorted(position[id(i)] for i in part)
    for ind in population:
        assert ind.fitness.valid and len(ind.fitness.values) == 3
        assert all(-300.0 <= v <= 300.0 for v in ind.fitness.values)
    assert population[-1].fitness.values == FAILED_FITNESS
    frame = client.predict_frame(genomes)
    assert list(frame["genome"]) == genomes and frame["ok"].tolist()[-1] is False
    assert {"uw_val_epoch_loss", "std_ciou_loss", "p_fail", "rank"} <= set(frame.columns)
    evaluated = pd.DataFrame(generation(3)[:6]).drop(columns=["individual_hash"])
    for column in METRIC_COLUMNS + ["generation"]:
        evaluated[column] = pd.to_numeric(evaluated[column], errors="coerce")
    answer = client.add_evaluations(evaluated, wait=False)
    assert answer["parent_id"] == loop["dataset_id"] and answer["added"] == 6
    assert _run(answer["job"]["id"], loop["settings"]) == "succeeded"
    assert client.dataset(answer["dataset_id"])["status"] == "ready"
    report = client.trust_report()
    assert report["version"] == 1 and report["name"] == "default" and report["active"]
