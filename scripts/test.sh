#!/usr/bin/env bash
# Set up this checkout on a fresh machine and run the whole test suite.
# torch 2.14.1 / torchvision 0.29.1 come from the machine's local wheel store (pip's config).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
exec python3 -m pytest "$@"
