#!/usr/bin/env bash
# Set up this checkout on a fresh machine and run the whole test suite.
# torch 2.14.1 / torchvision 0.29.1 come from the machine's local wheel store (pip's config).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
# The dashboard's browser tests drive Debian's Chromium; install it where missing and possible
# (they skip, saying why, where it cannot be installed).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
    >/tmp/nas-surrogate-chromium.log 2>&1 \
    || echo "chromium could not be installed (see /tmp/nas-surrogate-chromium.log): the browser tests will skip"
fi
# The SLURM deployment test (tests/deploy/test_slurm.py) starts a one-node cluster from Debian's
# slurm-wlm and munge; install them where missing and possible (it skips, saying why, otherwise).
if ! command -v slurmctld >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge; } \
    >/tmp/nas-surrogate-slurm.log 2>&1 \
    || echo "slurm-wlm could not be installed (see /tmp/nas-surrogate-slurm.log): the SLURM test will skip"
fi
exec python3 -m pytest "$@"
