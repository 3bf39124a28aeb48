"""The light client as a user installs it: ``pip install ./client[pandas,deap]`` into a fresh
virtual environment **without torch** (no system site packages), and the client's own tests
(client/tests/) run there with that environment's python against a real ``nas-surrogate
serve`` started here (the real CSV's first 90 rows, its bootstrap model trained as the other
serve tests do). Also ``/docs`` and ``/redoc`` in Chromium with every request off the service
refused: the pages render their operations from the service's own assets.

The venv is built once per client/pyproject.toml and kept under ~/.cache/nas-surrogate (PyPI
must be reachable the first time); the client itself is reinstalled each run.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import DATA_DIR

from .conftest import REPO, Served, write_seed_csv

CLIENT = REPO / "client"
CHROMIUM = os.environ.get("NAS_SURROGATE_CHROMIUM", "/usr/bin/chromium")


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _venv() -> Path:
    """A torch-free venv with the client's dependencies (cached by its pyproject's digest)."""
    digest = hashlib.sha256((CLIENT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nas-surrogate"
    venv = root / f"client-venv-{digest}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").is_file():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        done = subprocess.run([str(python), "-m", "pip", "install", "-q",
                               f"{CLIENT}[pandas,deap,progress,test]"],
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            pytest.skip(f"pip could not install the client's dependencies (no PyPI?): "
                        f"{done.stderr[-500:]}")
        (venv / ".complete").write_text("ok\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps",
                    "--force-reinstall", str(CLIENT)], check=True, capture_output=True,
                   timeout=300)
    return venv


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("client-serve")
    data_dir = tmp / "data"
    server = Served(data_dir, write_seed_csv(tmp / "seed.csv", 90), tmp / "serve.log")
    try:
        server.wait_ready()
        yield {"base": server.base, "key": (data_dir / "admin.key").read_text().strip(),
               "data_dir": data_dir, "log": server.log_path}
    finally:
        server.stop(signal.SIGINT, 30)


def test_client_tests_in_a_torch_free_venv(served, tmp_path):
    venv = _venv()
    python = venv / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True)
    assert probe.returncode != 0, "torch is importable in the client's venv"
    out = tmp_path / "client-out.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURROGATE_")}
    env.update(SURROGATE_URL=served["base"], SURROGATE_KEY=served["key"],
               NAS_SURROGATE_DATA_DIR=str(DATA_DIR), CLIENT_TEST_OUT=str(out),
               PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(CLIENT / "tests")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:] + \
        served["log"].read_text()[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]
    # the per-epoch curves are kept by the dataset version the ingest made
    ingest = json.loads(out.read_text())
    lines = (served["data_dir"] / "datasets" / ingest["dataset_id"] /
             "evaluations.jsonl").read_text().splitlines()
    curves = [json.loads(line).get("curve") for line in lines]
    assert sum(1 for c in curves if c and len(c) == 4) == len(ingest["curved"])
    # and shown for that genome in the dashboard's inspector
    genome = next(r["genome"] for r in csv.DictReader(open(DATA_DIR /
                  "surrogate_evolution_train.csv", newline=""))
                  if r["individual_hash"] == ingest["curved"][0])
    with httpx.Client(base_url=served["base"], timeout=120) as ui:
        form = ui.get("/ui/login")
        ui.post("/ui/login", data={"api_key": served["key"], "csrf": _csrf(form.text),
                                   "next": "/ui/inspect"})
        page = ui.post("/ui/inspect", data={"genomes": genome,
                                            "csrf": _csrf(ui.get("/ui/inspect").text)})
        model_page = ui.get("/ui/models/1")
    # the version's trust report shows the trusts ServiceSurrogate hands the pipeline
    assert "cls_trust (failure accuracy)" in model_page.text, model_page.text[-1500:]
    assert page.status_code == 200, page.text[-1000:]
    table = page.text[page.text.index("Measured per-epoch curve"):]
    table = table[:table.index("</table>")]
    assert table.count("<tr><th scope=\"row\">") == 4 and "average_precision" in table


@pytest.mark.skipif(shutil.which(CHROMIUM) is None and not Path(CHROMIUM).is_file(),
                    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")
def test_docs_and_redoc_offline_in_chromium(served):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    base = served["base"]
    refused: list[str] = []

    def only_the_service(route) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.route("**/*", only_the_service)
            page.goto(base + "/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            assert "/predict" in paths and "/propose" in paths and "/evaluations" in paths
            page.goto(base + "/redoc")
            page.wait_for_selector("text=/predict", timeout=30_000)
            assert "Predict" in page.content() or "predict" in page.content()
        finally:
            browser.close()
    # nothing was even tried off the service (ReDoc's footer logo is refused by the page's CSP)
    assert refused == [], refused
    assert "img-src 'self'" in httpx.get(base + "/redoc").headers["content-security-policy"]
