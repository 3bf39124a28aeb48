"""The README's own path, as a newcomer walks it (issue 29): every ```bash and ```python block of
README.md runs against ``nas-surrogate serve`` (a subprocess on a temporary directory, the first
generations of the real CSV, a quickly trained model), with the URL and key in the variables the
README itself uses ($SURROGATE_URL, $SURROGATE_KEY). A block that is not meant to run is marked
``<!-- readme-test: skip (why) -->`` on the line before it; the skips are few and say why.

On that path (scores, an append with retraining, the trust report) the bar of issue 29 is then
checked on the same instance: the retrained version carries its trust figures, the appended
dataset's page shows its genomes and opens one in the inspector, a tree model's job page draws
no empty chart, label noise reads as a table, and the log has one line per event that matters.
Screenshots of the pages go to $NAS_SURROGATE_SCREENSHOTS (default: the test's temporary folder).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DATA_DIR, train_rows

from .conftest import REPO, Served, write_seed_csv

README = REPO / "README.md"
CHROMIUM = os.environ.get("NAS_SURROGATE_CHROMIUM", "/usr/bin/chromium")
FENCE = re.compile(r"^```(bash|python)\n(.*?)^```$", re.M | re.S)
SKIP = re.compile(r"^<!--\s*readme-test:\s*skip\s*\((?P<why>.+)\)\s*-->$")
#: At most this many blocks may be skipped (set-up, long-running stacks, synopses).
MAX_SKIPS = 5
BLOCK_TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int
    skip: str | None


def readme_blocks(text: str | None = None) -> list[Block]:
    """The README's bash and python blocks in order, each with the reason it is skipped (the
    marker on the line just before its fence) or None."""
    text = README.read_text() if text is None else text
    out = []
    for m in FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        skip = SKIP.match(before)
        out.append(Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1,
                         skip.group("why") if skip else None))
    return out


def test_the_readme_blocks_are_found_and_every_skip_says_why() -> None:
    blocks = readme_blocks()
    runnable = [b for b in blocks if b.skip is None]
    skipped = [b for b in blocks if b.skip is not None]
    assert {b.lang for b in runnable} == {"bash", "python"}, blocks
    assert len(skipped) <= MAX_SKIPS, [(b.line, b.skip) for b in skipped]
    assert all(len(b.skip or "") > 15 for b in skipped), [(b.line, b.skip) for b in skipped]
    # The marker is only honoured right before a fence; a stray one would be a silent skip.
    text = README.read_text()
    assert sum(1 for line in text.splitlines() if SKIP.match(line.strip())) == len(skipped)
    # Runnable examples reach the served instance through the README's own variables.
    for block in runnable:
        hard = re.findall(r"(?<![-:=(\"' ])http://127\.0\.0\.1:\d+", block.code)
        assert not hard, (block.line, "use $SURROGATE_URL", hard)
    assert readme_blocks("<!-- readme-test: skip (a reason long enough) -->\n```bash\nx\n```\n"
                         )[0].skip == "a reason long enough"


def test_every_genome_the_readme_shows_is_valid() -> None:
    """The README's example genomes compile (its old ``Adamax(0.1, 0.9, 0.99)`` did not:
    ARITY_MISMATCH)."""
    from ml.arch.compiler import compile_genome
    from ml.genome import load

    genomes = re.findall(r'"genomes": \["([^"]+)"\]', README.read_text())
    assert genomes
    for text in genomes:
        compile_genome(load(text))  # raises GenomeError with its code if invalid


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``serve`` on generations 1-3 of the real CSV with a tree model (quick to train and to
    cross-validate), as a newcomer's instance: its admin key, URL and log."""
    tmp = tmp_path_factory.mktemp("readme-serve")
    data_dir = tmp / "var"
    served = Served(data_dir, write_seed_csv(tmp / "seed.csv", 90), tmp / "serve.log",
                    env={"SURROGATE_DEFAULT_PREDICTOR": "trees",
                         "SURROGATE_PROMOTE_GENERATIONS": "2",
                         "NAS_SURROGATE_DATA_DIR": str(DATA_DIR)})
    try:
        served.wait_ready()
        yield {"base": served.base, "key": (data_dir / "admin.key").read_text().strip(),
               "log": served.log_path, "tmp": tmp}
    finally:
        served.stop(signal.SIGINT, 30)


@pytest.fixture(scope="module")
def walked(served: dict[str, Any]) -> list[dict[str, Any]]:
    """Every runnable README block, in order, against the served instance."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SURROGATE_")},
           "SURROGATE_URL": served["base"], "SURROGATE_KEY": served["key"],
           "NAS_SURROGATE_DATA_DIR": str(DATA_DIR),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    results = []
    for block in readme_blocks():
        if block.skip is not None:
            continue
        command = ["bash", "-euo", "pipefail", "-c", block.code] if block.lang == "bash" \
            else [sys.executable, "-c", block.code]
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=BLOCK_TIMEOUT_S)
        results.append({"block": block, "rc": done.returncode,
                        "out": done.stdout[-3000:] + done.stderr[-3000:]})
    return results


def test_every_readme_block_runs_against_a_served_instance(walked, served):
    for r in walked:
        assert r["rc"] == 0, (f"README.md line {r['block'].line} ({r['block'].lang}) failed",
                              r["out"], served["log"].read_text()[-3000:])
    outputs = "\n".join(r["out"] for r in walked)
    assert '"ok":true' in outputs.replace(" ", "")  # the curl example's genome was predicted


def _get(served: dict[str, Any], path: str, **params: Any) -> Any:
    r = httpx.get(served["base"] + path, params=params, timeout=30,
                  headers={"X-API-Key": served["key"]})
    assert r.status_code == 200, r.text
    return r.json()


def appended_with_retrain(served: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The dataset version the README's loop appended with ``retrain``, and its training job."""
    versions = [d for d in _get(served, "/datasets", limit=100)["data"]
                if d.get("retrain_job_id")]
    assert versions, "the README's path appended no version with retrain"
    dataset = _get(served, f"/datasets/{versions[0]['id']}")
    return dataset, _get(served, f"/jobs/{dataset['retrain_job_id']}")


def test_on_the_readmes_path_the_retrained_version_carries_its_trust_figures(walked, served):
    _, job = appended_with_retrain(served)
    assert job["status"] == "succeeded", job
    version = _get(served, f"/models/{job['model_version']}")
    cv = (version.get("training_metrics") or {}).get("cv")
    assert cv, version  # null before issue 29: the retraining ran no cross-validation
    for figure in ("trust_spea2_top30", "trust_nsga2_top30", "validity_auc"):
        assert isinstance(cv[figure], float), (figure, cv)
    assert version["comparison"] is not None  # and the champion/challenger decision


def test_the_log_has_one_line_per_event_that_matters(walked, served):
    log = served["log"].read_text()
    assert '"route": "/readyz"' not in log and '"route": "/healthz"' not in log  # probes
    assert "torch.jit.script" not in log  # third-party noise, filtered once at start-up
    assert re.search(r"job \w{8} \(build_dataset\) succeeded in [\d.]+ s", log), log[-3000:]
    assert re.search(r"job \w{8} \(train\) succeeded in [\d.]+ s: registered default v1", log)
    assert '"route": "/predict"' in log  # real requests keep their access line
    warnings = [line for line in log.splitlines() if "Warning:" in line]
    assert len(warnings) == len(set(warnings)), warnings  # none repeated


try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - CI installs it with the test extra
    sync_playwright = None


@pytest.mark.skipif(sync_playwright is None or not Path(CHROMIUM).is_file(),
                    reason=f"playwright or Chromium ({CHROMIUM}) is missing")
def test_the_pages_on_the_readmes_path_in_chromium(walked, served, tmp_path):
    from .test_ui_browser import CONTRAST_JS, non_blank

    base, key = served["base"], served["key"]
    shots_dir = Path(os.environ.get("NAS_SURROGATE_SCREENSHOTS", tmp_path))
    shots_dir.mkdir(parents=True, exist_ok=True)
    dataset, job = appended_with_retrain(served)
    # A repeated measurement of one of its genomes: a version with label noise to show.
    row = train_rows()[93]  # generation 4, measured without failure (the README appended it)
    metrics = {m: float(row[m]) for m in dataset["metrics"]}  # every one: none missing
    metrics["ciou_loss"] += 0.1
    again = httpx.post(base + "/evaluations", headers={"X-API-Key": key}, timeout=60, json={
        "dataset_id": dataset["id"], "records": [{"genome": row["genome"], "generation": 4,
                                                  "metrics": metrics}]})
    assert again.status_code == 202, again.text
    noisy = again.json()["dataset_id"]
    bootstrap_train = next(j for j in _get(served, "/jobs", kind="train", limit=100)["data"]
                           if j["model_version"] == 1)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))

        def shot(name: str) -> Path:
            path = shots_dir / f"{name}.png"
            page.screenshot(path=str(path), full_page=True)
            worst = page.evaluate(CONTRAST_JS)
            assert not worst or worst[0]["ratio"] >= 4.5, (name, worst)
            assert non_blank(path) > 0.02, name
            return path

        page.goto(base + "/ui/login")
        page.fill("#api_key", key)
        page.keyboard.press("Enter")
        page.wait_for_url(base + "/ui/")
        version = job["model_version"]
        # The overview, the models page and the comparison show the retrained version's
        # trust figures (they were "—" for every figure of a retrained version).
        shot("overview")
        page.goto(f"{base}/ui/models")
        cells = page.locator(f"main table tbody tr:has(a[href^='/ui/models/{version}?'])"
                             " td.num").all_inner_texts()
        assert cells and all(c.strip() not in ("", "—") for c in cells), cells
        shot("models")
        page.goto(f"{base}/ui/models/compare?a=1&b={version}")
        text = page.inner_text("main")
        assert "trust_spea2_top30" in text
        row_text = page.inner_text("main table tbody tr:has-text('trust_spea2_top30')")
        assert "—" not in row_text, row_text
        shot("compare")
        page.goto(f"{base}/ui/models/{version}")
        page.wait_for_selector("#h-trust")
        assert "each the mean over the folds" in page.inner_text("main")
        page.wait_for_function("() => [...document.querySelectorAll('.plots img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)")
        shot("model")
        # The appended version's page lists its genomes (it read evaluations.jsonl as a CSV:
        # blank cells) and one opens in the inspector.
        page.goto(f"{base}/ui/datasets/{dataset['id']}")
        page.wait_for_selector("#h-sample")
        rows = page.locator("#h-sample ~ table tbody tr")
        assert rows.count() >= 5
        for i in range(rows.count()):
            cells = rows.nth(i).locator("td").all_inner_texts()
            assert cells[1].strip() == "4" and "_Head(" in cells[2], cells  # were blank
        shot("dataset_appended")
        rows.first.locator("a").click()
        page.wait_for_selector("#h-results")
        results = page.inner_text("#h-results ~ article")
        assert "Genome 1: valid" in results and "EMPTY_GENOME" not in results, results
        # A metric whose std outruns its prediction (heavy tail) is marked, and a note says
        # to read the interval instead.
        heavy = []
        for cells in [r.locator("th, td").all_inner_texts() for r in
                      page.locator("article.valid table").first.locator("tbody tr").all()]:
            if "—" in cells[1:3]:
                continue
            metric = cells[0].rstrip(" †")
            value, std = (float(c.replace(",", "")) for c in cells[1:3])
            assert cells[0].endswith("†") == (std > abs(value)), cells
            heavy += [metric] if std > abs(value) else []
        if heavy:
            note = page.inner_text("p.heavy-note")
            assert all(m in note for m in heavy) and "Read the 95 % interval" in note, note
        shot("inspector_from_dataset")
        # Label noise is a table of figures, not a JSON blob.
        page.goto(f"{base}/ui/datasets/{noisy}")
        page.wait_for_selector("#label-noise")
        noise = page.inner_text("#label-noise")
        assert "{" not in noise and "Pooled std" in noise, noise
        ciou = page.inner_text("#label-noise tr:has(th:text-is('ciou_loss'))")
        assert re.search(r"ciou_loss\s+0\.0\d+\s+1", ciou), ciou  # std of +0.1, 1 dof
        shot("dataset_label_noise")
        # A tree model's job page: its members counted, no empty per-epoch chart.
        page.goto(f"{base}/ui/jobs/{bootstrap_train['id']}")
        page.wait_for_selector("#job-members")
        assert page.locator("#h-epochs").count() == 0
        assert "ensemble member" in page.inner_text("#job-members")
        shot("job_tree_model")
        browser.close()
    assert not problems, problems
    if os.environ.get("NAS_SURROGATE_SCREENSHOTS"):
        shutil.copy(served["log"], shots_dir / "serve.log")
