"""What the dashboard's pages cost, against a running service (first contact, then warm).

Signs in with the key, then requests every page ``--repeats`` times: the first request of each
page (cold: templates compiled, charts drawn, a dataset's labels read) and the median of the
rest (warm), with the answer's size. Start the service first (``bash scripts/run.sh`` or
``nas-surrogate serve``); the job, dataset and model are the newest ones it has.

    python benchmarks/ui_pages.py --url http://127.0.0.1:8000 --key-file var/admin.key
"""
from __future__ import annotations

import argparse
import csv
import re
import statistics
import time
from pathlib import Path

import httpx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key-file", default="var/admin.key")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--csv", default=str(Path(__file__).resolve().parents[2] / "shared" /
                                             "data" / "surrogate_evolution_train.csv"))
    args = parser.parse_args()
    key = Path(args.key_file).read_text().strip()
    api = {"X-API-Key": key}
    client = httpx.Client(base_url=args.url, timeout=120)
    started = time.perf_counter()
    form = client.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    signed = client.post("/ui/login", data={"api_key": key, "csrf": token, "next": "/ui/"})
    assert signed.status_code == 303, signed.text
    print(f"sign-in (form + post): {1000 * (time.perf_counter() - started):.1f} ms")
    dataset = client.get("/datasets", headers=api).json()["data"][0]["id"]
    job = client.get("/jobs", headers=api).json()["data"][0]["id"]
    version = client.get("/models", headers=api).json()["data"][0]["version"]
    with open(args.csv, newline="") as handle:
        genome = next(csv.DictReader(handle))["genome"]
    pages = ["/ui/", "/ui/jobs", f"/ui/jobs/{job}", f"/ui/jobs/{job}/live", "/ui/models",
             f"/ui/models/{version}", f"/ui/models/compare?a=1&b={version}", "/ui/datasets",
             f"/ui/datasets/{dataset}", f"/ui/inspect?dataset={dataset}&row=0"]
    print(f"{'page':<44}{'first ms':>10}{'warm median ms':>16}{'KB':>7}")
    for path in pages:
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            response = client.get(path)
            times.append(time.perf_counter() - t)
            assert response.status_code == 200, (path, response.status_code)
        print(f"{path[:43]:<44}{1000 * times[0]:>10.1f}"
              f"{1000 * statistics.median(times[1:]):>16.1f}{len(response.content) // 1024:>7}")
    form = client.get("/ui/inspect")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    t = time.perf_counter()
    response = client.post("/ui/inspect", data={"genomes": genome + "\n" + genome[:-3],
                                                "csrf": csrf})
    assert response.status_code == 200
    print(f"inspect 2 pasted genomes (one broken): {1000 * (time.perf_counter() - t):.1f} ms")


if __name__ == "__main__":
    main()
