#!/usr/bin/env bash
# Set up this checkout and run the main job on the embedded default: encode the real genomes in
# ../shared/data (or NAS_SURROGATE_DATA_DIR) and print one JSON line per genome.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e .
data="${NAS_SURROGATE_DATA_DIR:-../shared/data}"
nas-surrogate genome check "$data/surrogate_evolution_train.csv" > /dev/null && echo "all genomes valid"
exec nas-surrogate encode "$data/seed_genomes.txt" "$@"
