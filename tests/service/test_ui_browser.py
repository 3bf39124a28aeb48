"""The dashboard in a real browser: Debian's Chromium driven by Playwright against
``nas-surrogate serve`` in a subprocess (SQLite, jobs in process, the real seed CSV).

One walk through a researcher's day: sign in with the keyboard, see the bootstrap model, watch a
training job progress to success on its page without a reload, open the new model's report,
inspect a genome with a deliberate error, and look at the datasets. Every page is saved as a
screenshot under the test's temporary directory and checked for non-blank content; the text of
every page is checked for WCAG AA contrast (4.5:1), and keyboard navigation starts with the skip
link.

Skipped, with the reason, only where Playwright or Chromium is missing (``.ci/run`` installs
both where it can: ``apt-get install chromium``, ``pip install .[test]``).
"""
from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import train_rows

from .conftest import Served, write_seed_csv

CHROMIUM = os.environ.get("NAS_SURROGATE_CHROMIUM", "/usr/bin/chromium")

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - CI installs it with the test extra
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(sync_playwright is None,
                       reason="playwright is not installed (pip install -e '.[test]')"),
    pytest.mark.skipif(shutil.which(CHROMIUM) is None and not Path(CHROMIUM).is_file(),
                       reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]

#: The contrast of every visible text element against the background it is drawn on (the
#: first opaque ancestor background), per WCAG 2.x relative luminance. Returns the worst ones.
CONTRAST_JS = """
() => {
  const parse = (c) => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(',').map(Number); return {r: p[0], g: p[1], b: p[2],
    a: p.length > 3 ? p[3] : 1}; };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 :
    Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c.r) + 0.7152 * f(c.g) +
    0.0722 * f(c.b); };
  const background = (el) => { for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor); if (c && c.a > 0.5) return c; }
    return {r: 255, g: 255, b: 255, a: 1}; };
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.closest('svg') || el.closest('[aria-hidden="true"]')) continue;
    const r = el.getBoundingClientRect(); if (!r.width || !r.height) continue;
    const style = getComputedStyle(el); if (style.visibility === 'hidden') continue;
    const fg = parse(style.color), bg = background(el);
    const a = lum(fg), b = lum(bg);
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    out.push({tag: el.tagName, text: el.textContent.trim().slice(0, 40),
              ratio: Math.round(ratio * 100) / 100});
  }
  out.sort((x, y) => x.ratio - y.ratio);
  return out.slice(0, 5);
}
"""


def non_blank(path: Path) -> float:
    """The share of pixels that differ from the page background (white)."""
    import matplotlib.image as mpimg
    import numpy as np

    pixels = mpimg.imread(str(path))[..., :3]
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    return float((np.abs(pixels - 1.0).sum(axis=2) > 0.1).mean())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``serve`` on the first generations of the real CSV (its bootstrap model is trained and
    activated), epochs slowed so a training's progress can be watched."""
    tmp = tmp_path_factory.mktemp("ui-serve")
    data_dir = tmp / "var"
    served = Served(data_dir, write_seed_csv(tmp / "seed.csv", 90), tmp / "serve.log",
                    env={"SURROGATE_EPOCH_DELAY_S": "0.4"})
    try:
        served.wait_ready()
        yield {"base": served.base, "key": (data_dir / "admin.key").read_text().strip(),
               "log": served.log_path}
    finally:
        served.stop(signal.SIGINT, 30)

def test_a_researchers_day_in_chromium(served, tmp_path):
    base, key = served["base"], served["key"]
    shots: dict[str, Path] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))

        def shot(name: str) -> None:
            shots[name] = tmp_path / f"{name}.png"
            page.screenshot(path=str(shots[name]), full_page=True)
            worst = page.evaluate(CONTRAST_JS)
            assert not worst or worst[0]["ratio"] >= 4.5, (name, worst)

        # Sign in with the keyboard only: the key field has focus, Enter submits.
        page.goto(base + "/ui/")
        assert page.url.startswith(base + "/ui/login")
        assert page.evaluate("document.activeElement.id") == "api_key"
        shot("login")
        page.keyboard.type("nas_wrong-key")
        page.keyboard.press("Enter")
        page.wait_for_selector("#login-error")
        assert "unknown or revoked" in page.inner_text("#login-error")
        page.fill("#api_key", key)
        page.keyboard.press("Enter")
        page.wait_for_url(base + "/ui/")
        problems.clear()  # the refused key's 401 page was logged; from here nothing may fail
        cookie = next(c for c in page.context.cookies() if c["name"] == "nas_ui_key")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie").find("nas_ui_key") < 0  # no script reads it

        # The overview shows the bootstrap model; the first Tab reaches the skip link.
        table = page.inner_text("main table")
        assert "default" in table and "v1" in table and "stack" in table
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.getAttribute('href')")
        assert focused and focused.startswith("/ui/")
        shot("overview")

        # A training job, watched on its page: progress moves without a reload.
        datasets = httpx.get(base + "/datasets", headers={"X-API-Key": key}).json()["data"]
        created = httpx.post(base + "/jobs/train", headers={"X-API-Key": key}, json={
            "dataset_id": datasets[0]["id"], "predictor": "simple_gcn",
            "hyperparameters": {"epochs": 12}, "cv_folds": 2, "activate": True}, timeout=30)
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        page.goto(f"{base}/ui/jobs/{job_id}")
        page.evaluate("window.__sameDocument = true")
        seen: set[str] = set()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            status = page.inner_text("#job-status")
            seen.add(page.inner_text("#live .pct") + " " + status)
            if status in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.3)
        assert status == "succeeded", (status, served["log"].read_text()[-3000:])
        assert page.evaluate("window.__sameDocument") is True  # never reloaded
        assert len(seen) >= 3, seen  # at least two intermediate states were shown
        page.wait_for_selector("#h-epochs")
        assert page.locator("figure.chart img").count() == 1
        rows = page.locator("#live table").first.locator("tbody tr").count()
        assert rows >= 5
        shot("job")

        # Its report: the model page the job links to, with its plots loaded.
        page.click("#job-model")
        page.wait_for_selector("#h-trust")
        assert page.title().startswith("default v2")
        page.wait_for_function("() => [...document.querySelectorAll('.plots img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)")
        assert page.locator(".plots img").count() >= 5  # pred vs true per metric (+ curves)
        assert "trust_spea2_top30" in page.inner_text("main")
        shot("model")

        # The inspector: a deliberate error is pointed at, a valid genome predicted and drawn.
        page.click("nav >> text=Genome inspector")
        good = train_rows()[0]["genome"]
        page.fill("#genomes", good + "\n" + good[:40] + "@" + good[41:])
        page.click("form.stack button[type=submit]")
        page.wait_for_selector("#h-results")
        text = page.inner_text("#h-results ~ article.invalid")
        assert "UNEXPECTED_CHARACTER" in text and "at character 40" in text
        assert page.inner_text("pre.pointer mark") == "@"
        assert "predicted by default v2" in page.inner_text("#h-results")
        assert page.locator("article.valid .scroll svg circle").count() > 50
        shot("inspector")

        page.click("nav >> text=Datasets")
        page.wait_for_selector("main table")
        page.locator("main table tbody tr").first.locator("a").first.click()
        page.wait_for_selector("#h-dist")
        assert page.locator("figure.chart img").count() == 5
        shot("dataset")
        page.click("nav >> text=Jobs")
        page.select_option("#f-status", "succeeded")
        page.click("form.filters button")
        assert job_id[:8] in page.inner_text("main table")
        shot("jobs")
        browser.close()
    assert not problems, problems
    for name, path in shots.items():
        assert non_blank(path) > 0.02, name
