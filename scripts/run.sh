#!/usr/bin/env bash
# Set up this checkout and run the service on the embedded default: SQLite in ./var, jobs on an
# in-process thread, no Redis or Celery. On first start it creates an admin API key (printed once,
# kept in var/admin.key), builds the dataset from ../shared/data/surrogate_evolution_train.csv
# (or NAS_SURROGATE_DATA_DIR, or --seed-csv CSV) and trains and activates the default model.
# Extra arguments go to `nas-surrogate serve` (--host, --port, --data-dir, --seed-csv).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e .
exec nas-surrogate serve "$@"
