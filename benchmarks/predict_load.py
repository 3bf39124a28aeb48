"""POST /predict latency and throughput against a running service (cold and warm encoding cache).

* cold: a batch of ``--n`` unique genomes: the real evaluated genomes plus freshly sampled
  compiling genomes (``ml.sampling.sample_compiling``, a new seed each repetition, so the
  server has never encoded them); latency of the one request, ``--repeats`` times. The real
  genomes are sent once first (untimed, reported as the priming request), so in every timed
  cold batch exactly the sampled genomes are new to the server's cache;
* warm: the same batch resent at once (everything in the server's encoding cache);
* load: ``--clients`` concurrent clients each send ``--rounds`` warm batches; throughput in
  genomes/s and requests/s, and the latency each request saw under load.

* worst case (``--worst-case``): ``--clients`` concurrent requests of ``--worst-n`` distinct
  genomes each with six chained DenseNets (~4,300 graph nodes, a 2.6 MB graph record each),
  while the API process's RSS is sampled every 50 ms (``--pid``, or found by the port); prints
  the peak RSS and how each request was answered (200, or the bound that stopped it: 413
  REQUEST_TOO_LARGE, 503 SERVER_BUSY / DEADLINE_EXCEEDED). Goal: <= 2 GB whatever the genomes.

Prints medians (p50/p95 over the repetitions) and ratios; ``--json`` adds one JSON object.
The server's own cache counters (``GET /metrics``) confirm how cold the cold batches were.
Sampling happens before any timing (about 0.1 s per genome on CPU: the compile check).

    nas-surrogate serve --port 8000 &    # first start builds the dataset and trains (1-2 min)
    python benchmarks/predict_load.py [--url http://127.0.0.1:8000] [--key-file var/admin.key]
        [--n 2000] [--clients 4] [--repeats 3] [--rounds 3] [--seed S] [--json]
        [--worst-case [--worst-n 5000] [--pid PID]]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("NAS_SURROGATE_DATA_DIR", REPO.parent / "shared" / "data"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def real_genomes() -> list[str]:
    with open(DATA / "surrogate_evolution_train.csv", newline="") as handle:
        return list(dict.fromkeys(row["genome"] for row in csv.DictReader(handle)))


def fresh_genomes(count: int, seed: int, exclude: set[str]) -> list[str]:
    """``count`` compiling genomes never seen before (not in ``exclude``); tops up with the
    next seeds if the sampler repeats itself."""
    from ml.sampling import sample_compiling

    out: list[str] = []
    while len(out) < count:
        for text in sample_compiling(count - len(out), seed=seed):
            if text not in exclude:
                exclude.add(text)
                out.append(text)
        seed += 1_000_003
    return out


def cache_counters(client: Any) -> dict[str, float]:
    """The server's encoding-cache counters (hit/miss) from /metrics; empty if unavailable."""
    try:
        text = client.get("/metrics").text
    except Exception:
        return {}
    found = re.findall(r'nas_surrogate_encoding_cache_total\{result="(\w+)"\} ([0-9.e+]+)', text)
    return {name: float(value) for name, value in found}


def post_predict(client: Any, genomes: list[str]) -> float:
    start = time.perf_counter()
    response = client.post("/predict", json={"genomes": genomes})
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"POST /predict -> {response.status_code}: {response.text[:500]}")
    items = response.json()["items"]
    if len(items) != len(genomes):
        raise SystemExit(f"POST /predict answered {len(items)} items for {len(genomes)} genomes")
    return elapsed


def load_phase(url: str, headers: dict[str, str], genomes: list[str], clients: int,
               rounds: int, timeout: float) -> dict[str, Any]:
    """``clients`` threads, one HTTP connection each, ``rounds`` warm batches per client,
    started together."""
    import httpx

    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def worker() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=timeout) as client:
            client.get("/healthz")  # connect before the clock starts
            barrier.wait()
            try:
                for _ in range(rounds):
                    elapsed = post_predict(client, genomes)
                    with lock:
                        latencies.append(elapsed)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    requests = clients * rounds
    return {"clients": clients, "requests": requests, "wall_s": wall,
            "requests_per_s": requests / wall, "genomes_per_s": requests * len(genomes) / wall,
            "latency_p50_s": statistics.median(latencies),
            "latency_p95_s": percentile(latencies, 95)}


def worst_case_genomes(count: int, offset: int = 0) -> list[str]:
    """``count`` distinct 311-character genomes, each six DenseNet-201s chained through 32x
    upsamples (~4,300 nodes, 2.6 MB records): the most graph per character the grammar allows
    without failing to compile. Only a Dropout probability differs between them."""
    head = "Adam(0.5, 0.5, False), StepLR(2, 0.5), 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1"
    out = []
    for i in range(offset, offset + count):
        chain = f"Dropout_2D(IN0, {0.1 + 0.8 * i / (offset + count + 1)!r})"
        for level in range(6):
            chain = f"DenseNet({chain}, 3, 0)"
            if level < 5:
                chain = f"Upsample_2D({chain}, 32.0, 0)"
        out.append(f"FCOS_Head({chain}, {head})")
    return out


def server_pid(url: str) -> int | None:
    """The PID listening on the URL's port (this machine only)."""
    from urllib.parse import urlparse

    import psutil

    port = urlparse(url).port or 80
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return conn.pid
    return None


def worst_case_phase(url: str, headers: dict[str, str], clients: int, n: int, pid: int,
                     timeout: float) -> dict[str, Any]:
    """``clients`` concurrent worst-case requests; peak RSS of the server process tree."""
    import httpx
    import psutil

    process = psutil.Process(pid)

    def rss() -> int:
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    baseline = rss()
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            stop.wait(0.05)

    outcomes: list[dict[str, Any]] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        genomes = worst_case_genomes(n, offset=i * n + int(time.time()) % 100_000 * 7)
        started = time.perf_counter()
        with httpx.Client(base_url=url, headers=headers, timeout=timeout) as http:
            response = http.post("/predict", json={"genomes": genomes})
        body = response.json()
        code = body.get("error", {}).get("code") if response.status_code != 200 else "ok"
        with lock:
            outcomes.append({"status": response.status_code, "code": code,
                             "seconds": round(time.perf_counter() - started, 2)})

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    sampler.join()
    return {"clients": clients, "genomes_per_request": n, "baseline_rss_mb": baseline / 2**20,
            "peak_rss_mb": peak[0] / 2**20, "outcomes": outcomes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", default=None, help="an API key with the predict scope")
    parser.add_argument("--key-file", default="var/admin.key",
                        help="read the key from this file when --key is not given")
    parser.add_argument("--n", type=int, default=2000, help="genomes per request")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (load)")
    parser.add_argument("--repeats", type=int, default=3, help="cold/warm repetitions")
    parser.add_argument("--rounds", type=int, default=3, help="warm batches per client (load)")
    parser.add_argument("--seed", type=int, default=None,
                        help="first sampling seed (default: from the clock, so a rerun against "
                             "the same server is cold again)")
    parser.add_argument("--timeout", type=float, default=900.0, help="per request, seconds")
    parser.add_argument("--json", action="store_true", help="also print one JSON object")
    parser.add_argument("--worst-case", action="store_true",
                        help="also run the worst-case memory phase (see the module docstring)")
    parser.add_argument("--worst-only", action="store_true",
                        help="run only the worst-case memory phase")
    parser.add_argument("--worst-n", type=int, default=5000,
                        help="genomes per worst-case request (the default SURROGATE_MAX_BATCH)")
    parser.add_argument("--pid", type=int, default=None, help="the API process (RSS)")
    args = parser.parse_args()

    import httpx

    key = args.key or Path(args.key_file).read_text().strip()
    headers = {"X-API-Key": key}
    seed = args.seed if args.seed is not None else int(time.time()) % 1_000_000_000
    worst: dict[str, Any] | None = None
    if args.worst_case or args.worst_only:
        pid = args.pid or server_pid(args.url)
        if pid is None:
            raise SystemExit(f"no process listens on {args.url}; pass --pid")
        worst = worst_case_phase(args.url, headers, args.clients, args.worst_n, pid,
                                 args.timeout)
        print(f"worst case: {args.clients} concurrent requests of {args.worst_n} six-DenseNet "
              f"genomes; API RSS {worst['baseline_rss_mb']:.0f} MB before, peak "
              f"{worst['peak_rss_mb']:.0f} MB (goal <= 2048 MB)")
        for outcome in worst["outcomes"]:
            print(f"  {outcome['status']} {outcome['code']} after {outcome['seconds']} s")
        if args.worst_only:
            if args.json:
                print(json.dumps({"url": args.url, "worst_case": worst}))
            return 0

    real = real_genomes()
    fresh_per_batch = max(0, args.n - len(real))
    seen = set(real)
    start = time.perf_counter()
    batches = []
    for repeat in range(args.repeats):
        batch = real[:args.n] + fresh_genomes(fresh_per_batch, seed + repeat, seen)
        random.Random(seed + repeat).shuffle(batch)
        batches.append(batch)
    sampling_s = time.perf_counter() - start
    print(f"{args.repeats} batches of {args.n} unique genomes ({min(len(real), args.n)} real + "
          f"{fresh_per_batch} sampled, seeds {seed}..{seed + args.repeats - 1}); sampling took "
          f"{sampling_s:.1f} s", flush=True)

    cold: list[float] = []
    warm: list[float] = []
    misses: list[float] = []
    with httpx.Client(base_url=args.url, headers=headers, timeout=args.timeout) as client:
        ready = client.get("/readyz")
        if ready.status_code != 200:
            raise SystemExit(f"{args.url}/readyz -> {ready.status_code}: {ready.text[:300]}")
        # Untimed in the table: the real genomes once, so every timed cold batch is the same
        # mix (real ones cached, sampled ones new) and the process's first-request costs
        # (model load, per-variant encoder tables) are paid here.
        first_s = post_predict(client, real[:args.n])
        print(f"  priming request ({min(len(real), args.n)} real genomes, cold): {first_s:.2f} s",
              flush=True)
        for repeat, batch in enumerate(batches):
            before = cache_counters(client)
            cold.append(post_predict(client, batch))
            after = cache_counters(client)
            if "miss" in after:
                misses.append(after["miss"] - before.get("miss", 0.0))
            warm.append(post_predict(client, batch))
            print(f"  repeat {repeat + 1}/{args.repeats}: cold {cold[-1]:.2f} s "
                  f"({int(misses[-1]) if misses else '?'} cache misses), warm {warm[-1]:.3f} s",
                  flush=True)
    load = load_phase(args.url, headers, batches[-1], args.clients, args.rounds, args.timeout)

    sequential_gps = args.n / statistics.median(warm)
    rows = [
        ("cold batch latency", f"{statistics.median(cold):.3f} s", f"{percentile(cold, 95):.3f} s",
         f"{args.n / statistics.median(cold):,.0f} genomes/s"),
        ("warm batch latency", f"{statistics.median(warm):.3f} s", f"{percentile(warm, 95):.3f} s",
         f"{sequential_gps:,.0f} genomes/s"),
        (f"warm, {args.clients} clients", f"{load['latency_p50_s']:.3f} s",
         f"{load['latency_p95_s']:.3f} s",
         f"{load['genomes_per_s']:,.0f} genomes/s, {load['requests_per_s']:.2f} req/s"),
    ]
    print(f"\nPOST /predict, {args.n} genomes per request, {args.url} "
          f"(p50/p95 over {args.repeats} repetitions; load: {load['requests']} requests)")
    print(f"{'':<22} {'p50':>10} {'p95':>10}   throughput")
    for name, p50, p95, rate in rows:
        print(f"{name:<22} {p50:>10} {p95:>10}   {rate}")
    ratios = {"cold_over_warm_p50": statistics.median(cold) / statistics.median(warm),
              "load_over_sequential_throughput": load["genomes_per_s"] / sequential_gps}
    print(f"cold / warm (p50): {ratios['cold_over_warm_p50']:.1f}x;  {args.clients}-client / "
          f"1-client warm throughput: {ratios['load_over_sequential_throughput']:.2f}x;  "
          f"cold cache misses per batch (server counters): "
          f"{statistics.median(misses) if misses else 'n/a'}")
    if args.json:
        print(json.dumps({"url": args.url, "n": args.n, "repeats": args.repeats,
                          "real": min(len(real), args.n), "sampled": fresh_per_batch,
                          "seed": seed, "sampling_s": sampling_s, "priming_s": first_s,
                          "cold_s": cold, "warm_s": warm,
                          "cold_cache_misses": misses,
                          "cold_p50_s": statistics.median(cold), "cold_p95_s": percentile(cold, 95),
                          "warm_p50_s": statistics.median(warm), "warm_p95_s": percentile(warm, 95),
                          "load": load, "ratios": ratios, "worst_case": worst}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
