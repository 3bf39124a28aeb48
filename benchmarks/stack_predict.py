"""The default predictor's (``stack``) predict on a batch of cached feature rows: scikit-learn's
own predictions (every tree's ``predict`` and each SVR's, the old way) against the compiled
walk and kernel sum, interleaved, on the real genomes.

Fits ``stack`` with its default configuration on the real training CSV (keeping the fitted
scikit-learn estimators aside), builds ``--rows`` rows (the real rows and points between pairs
of them), checks both ways agree (the tolerance of tests/ml/models/test_stack.py), then times
``predict_features`` ``--repeats`` times each way, alternating. Also the first prediction after
a bundle load: in this process (the forests and kernels compiled from the bundle's arrays) and
in a fresh process (plus numba's import and its cached machine code; the very first run on a
machine also compiles that code). Prints medians of wall and CPU time (the CPU time is what the
call itself used, so it is the fairer figure on a machine shared with other work).

    python benchmarks/stack_predict.py [--rows 2000] [--repeats 15] [--seed 0]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("NAS_SURROGATE_DATA_DIR", REPO.parent / "shared" / "data"))

FRESH = """
import sys, time, numpy as np
t0 = time.perf_counter()
from ml.train.bundle import load_bundle
model = load_bundle(sys.argv[1])
x = np.load(sys.argv[2])
t1 = time.perf_counter(); model.predict_features(x); t2 = time.perf_counter()
model.predict_features(x); t3 = time.perf_counter()
print(f"{t2 - t1:.4f} {t3 - t2:.4f}")
"""


def timed(call: object) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    call()  # type: ignore[operator]
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from ml.datasets.records import load_csv
    from ml.models.registry import create
    from ml.train.bundle import load_bundle, save_bundle
    from tests.tree_reference import keeping_sklearn, sklearn_prediction  # the tests' oracle

    records, _ = load_csv(DATA / "surrogate_evolution_train.csv")
    patch = pytest.MonkeyPatch()
    with keeping_sklearn(patch):
        model = create("stack", {"seed": args.seed})
        start = time.perf_counter()
        model.fit(records)
    patch.undo()
    print(f"fitted stack on {len(records)} genomes in {time.perf_counter() - start:.1f} s")
    real = model.featurize(records)
    rng = np.random.default_rng(args.seed)
    a, b = rng.integers(0, len(real), args.rows), rng.integers(0, len(real), args.rows)
    t = rng.uniform(0.0, 1.0, (args.rows, 1))
    x = np.concatenate([real, (1 - t) * real[a] + t * real[b]])[:args.rows]

    with tempfile.TemporaryDirectory() as tmp:
        bundle = save_bundle(model, Path(tmp) / "bundle")
        np.save(Path(tmp) / "x.npy", x)
        loaded = load_bundle(bundle)
        first_here = timed(lambda: loaded.predict_features(x))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "client"),
                                                            os.environ.get("PYTHONPATH", "")])}
        fresh = subprocess.run([sys.executable, "-c", FRESH, str(bundle), str(Path(tmp) / "x.npy")],
                               capture_output=True, text=True, check=True, env=env)
        first_fresh, second_fresh = (float(v) for v in fresh.stdout.split())

    old_patch = pytest.MonkeyPatch()
    expected = sklearn_prediction(model, x, old_patch)
    fast = model.predict_features(x)
    for field in ("mean", "std", "p_fail", "interval"):
        np.testing.assert_allclose(getattr(fast, field), getattr(expected, field),
                                   rtol=1e-9, atol=1e-12, err_msg=field)
    old, new = [], []
    for _ in range(args.repeats):
        old.append(timed(lambda: sklearn_prediction(model, x, old_patch)))
        new.append(timed(lambda: model.predict_features(x)))

    def median(values: list[tuple[float, float]], k: int) -> float:
        return statistics.median(v[k] for v in values)

    print(f"{len(x)} rows, {args.repeats} interleaved repeats, medians:")
    print(f"  old (scikit-learn predict) wall {median(old, 0):.4f} s cpu {median(old, 1):.4f} s")
    print(f"  new (compiled, warm)       wall {median(new, 0):.4f} s cpu {median(new, 1):.4f} s")
    print(f"  ratio old/new              wall {median(old, 0) / median(new, 0):.1f}x  "
          f"cpu {median(old, 1) / median(new, 1):.1f}x")
    print(f"  first call after a bundle load, this process: wall {first_here[0]:.4f} s "
          f"cpu {first_here[1]:.4f} s")
    print(f"  first call in a fresh process (numba import + cached code): {first_fresh:.4f} s, "
          f"then {second_fresh:.4f} s")


if __name__ == "__main__":
    main()
