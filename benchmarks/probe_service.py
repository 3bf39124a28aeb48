"""Hostile and unlucky probes of issue 28 against a running service, then a stop that must end
every process the service started.

    python benchmarks/probe_service.py                      # starts `nas-surrogate serve`
    python benchmarks/probe_service.py --url URL --key-file admin.key   # probes a running one

Embedded (default): ``serve`` on a temporary data dir and a free port, seeded with the first
``--rows`` rows of the real CSV; probed; stopped with SIGTERM; started again and killed with
SIGKILL. Before each stop the process tree is recorded with psutil; after it, the processes of
that tree still alive are counted. Prints one JSON object: probes tried, 5xx seen (with the
probe names), writes acknowledged but not stored, processes alive after each stop. Exit 1 if
any probe answered 5xx. Not a test (benchmarks are not run in CI).
"""
from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
CSV = REPO.parent / "shared" / "data" / "surrogate_evolution_train.csv"
BIG = 2**63


class Probe:
    """Sends requests, counting them and remembering which answered 5xx."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=120)
        self.tried = 0
        self.server_errors: list[str] = []
        self.unstored: list[str] = []

    def send(self, name: str, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        self.tried += 1
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:  # a reset connection counts as a server failure
            self.server_errors.append(f"{name}: {type(exc).__name__}")
            return None
        if r.status_code >= 500:
            self.server_errors.append(f"{name}: {r.status_code} {_code(r)}")
        return r


def _code(r: httpx.Response) -> str:
    try:
        return str(r.json()["error"]["code"])
    except Exception:
        return ""


def _h(key: str, **extra: str) -> dict[str, str]:
    return {"X-API-Key": key, **extra}


def run_probes(p: Probe, admin: str) -> None:
    genomes = [row["genome"] for row in csv.DictReader(open(CSV))][:20]
    keys = {}
    for scope in ("predict", "train"):  # write-then-read-back: acknowledged means stored
        r = p.send(f"create {scope} key", "POST", "/keys", headers=_h(admin),
                   json={"name": f"probe-{scope}", "scopes": [scope]})
        if r is not None and r.status_code == 201:
            keys[scope] = r.json()["key"]
            listed = p.send("read keys back", "GET", "/keys", headers=_h(admin))
            if listed is None or r.json()["id"] not in [k["id"] for k in listed.json()["data"]]:
                p.unstored.append(f"key {scope}")
    predict, train = keys.get("predict", admin), keys.get("train", admin)
    victim = p.send("create victim key", "POST", "/keys", headers=_h(admin),
                    json={"name": "victim", "scopes": ["predict"]})
    if victim is not None and victim.status_code == 201:
        r = p.send("revoke", "POST", f"/keys/{victim.json()['id']}/revoke", headers=_h(admin))
        if r is not None and r.status_code == 200:
            time.sleep(0.1)
            still = p.send("revoked key used", "GET", "/models", headers=_h(victim.json()["key"]))
            if still is not None and still.status_code == 200:
                p.unstored.append("revocation")
    models = p.send("models", "GET", "/models", headers=_h(predict))
    dataset = None
    if models is not None and models.status_code == 200 and models.json().get("data"):
        dataset = models.json()["data"][0].get("lineage", {}).get("dataset_id")
    # bad metrics (raw JSON literals), each twice with an Idempotency-Key
    for literal in ("NaN", "Infinity", "-Infinity", "1e999"):
        raw = ('{"dataset_id": "%s", "records": [{"genome": %s, "metrics": {"ciou_loss": %s}}]}'
               % (dataset, json.dumps(genomes[0]), literal))
        for attempt in range(2):
            p.send(f"evaluations metric {literal} #{attempt}", "POST", "/evaluations",
                   content=raw, headers=_h(train, **{"Content-Type": "application/json",
                                                     "Idempotency-Key": f"p-{literal}"}))
    # huge versions and page tokens
    for model in (f"default@{BIG}", f"default@{10**200}", "default@0"):
        p.send(f"predict model {model[:20]}", "POST", "/predict", headers=_h(predict),
               json={"genomes": genomes[:1], "model": model})
        p.send(f"propose model {model[:20]}", "POST", "/propose", headers=_h(predict),
               json={"population": genomes[:4], "k": 1, "pool_size": 4,
                     "inner_generations": 1, "model": model})
    for offset in ("1e300", "1e999", str(BIG), "-1", "2.5"):
        token = base64.urlsafe_b64encode(('{"offset": %s}' % offset).encode()).decode()
        p.send(f"jobs page_token {offset}", "GET", "/jobs", params={"page_token": token},
               headers=_h(train))
    # long genomes on every route that takes them
    long = genomes[0] + " " * 1_000_000
    p.send("predict long genome", "POST", "/predict", headers=_h(predict),
           json={"genomes": [long]})
    p.send("encode long genome", "POST", "/genomes/encode", headers=_h(predict),
           json={"genomes": [long]})
    p.send("propose long genome", "POST", "/propose", headers=_h(predict),
           json={"population": [long, genomes[1]], "k": 1})
    p.send("evaluations long genomes", "POST", "/evaluations", headers=_h(train),
           json={"dataset_id": dataset, "records": [{"genome": long}] * 3})
    # cross-scope reads, the dashboard included
    p.send("predict key reads datasets", "GET", "/datasets", headers=_h(predict))
    if dataset:
        p.send("predict key reads a dataset", "GET", f"/datasets/{dataset}",
               headers=_h(predict))
        ui = httpx.Client(base_url=str(p.http.base_url), timeout=60,
                          cookies={"nas_ui_key": predict})
        p.tried += 1
        r = ui.get("/ui/inspect", params={"dataset": dataset, "row": 0})
        if r.status_code >= 500:
            p.server_errors.append(f"ui inspect dataset row: {r.status_code}")
        p.tried += 1
        r = ui.get("/ui/inspect", params={"dataset": dataset, "row": BIG})
        if r.status_code >= 500:
            p.server_errors.append(f"ui inspect huge row: {r.status_code}")
    # wrong methods, API and dashboard
    for method, path in (("DELETE", "/predict"), ("PUT", "/keys"), ("GET", "/ui/logout"),
                         ("PUT", "/ui/inspect"), ("PATCH", "/jobs")):
        p.send(f"{method} {path}", method, path, headers=_h(admin))
    # bad-key flood from one address, X-Forwarded-For varied; then a valid key must still work
    for i in range(30):
        p.send("bad key", "GET", "/models", headers={
            "X-API-Key": f"nas_bad{i}", "X-Forwarded-For": f"10.0.{i}.1"})
    ok = p.send("valid key after the flood", "GET", "/models", headers=_h(admin))
    if ok is not None and ok.status_code != 200:
        p.server_errors.append(f"valid key refused after a bad-key flood: {ok.status_code}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seed(path: Path, rows: int) -> Path:
    with open(CSV, newline="") as src, open(path, "w", newline="") as dst:
        writer = csv.writer(dst)
        for i, row in enumerate(csv.reader(src)):
            if i <= rows:
                writer.writerow(row)
    return path


def _start(data: Path, seed: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SURROGATE_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from nas_surrogate.cli import main; raise SystemExit(main())",
         "serve", "--data-dir", str(data), "--port", str(port), "--seed-csv", str(seed)],
        cwd=REPO, env=clean, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited: see {log}")
        try:
            if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit("serve not ready in 600 s")


def _stop(proc: subprocess.Popen[bytes], sig: int, grace: float = 30) -> int:
    """Record the tree, send ``sig`` to ``serve`` only, wait the grace; processes of the tree
    still alive (they are then killed, so nothing is left behind by the probe itself)."""
    tree = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    time.sleep(3)
    alive = []
    for pid in tree:
        try:
            child = psutil.Process(pid)
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            continue
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    return len(alive)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url")
    parser.add_argument("--key-file", type=Path)
    parser.add_argument("--rows", type=int, default=80, help="seed rows (embedded)")
    args = parser.parse_args()
    out: dict[str, Any] = {}
    if args.url:
        probe = Probe(args.url)
        run_probes(probe, args.key_file.read_text().strip())
    else:
        work = Path(tempfile.mkdtemp(prefix="probe-"))
        seed, log = _seed(work / "seed.csv", args.rows), work / "serve.log"
        proc, base = _start(work / "data", seed, log)
        probe = Probe(base)
        run_probes(probe, (work / "data" / "admin.key").read_text().strip())
        out["alive_after_sigterm"] = _stop(proc, signal.SIGTERM)
        proc, _ = _start(work / "data", seed, log)
        out["alive_after_sigkill"] = _stop(proc, signal.SIGKILL)
        out["log"] = str(log)
    out = {"probes": probe.tried, "5xx": len(probe.server_errors),
           "acknowledged_not_stored": len(probe.unstored), **out,
           "5xx_probes": probe.server_errors, "unstored": probe.unstored}
    print(json.dumps(out, indent=1))
    return 1 if probe.server_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
