#!/usr/bin/env bash
# Sets up .venv and runs the test suite.  Usage: bash scripts/test.sh [pytest args]
# Two test processes (pytest-xdist): on 2 cores most tests wait on Python,
# not on the cores, and two at a time finish the suite sooner.  worksteal:
# an idle process takes tests queued for the other, so a file of long
# multi-process tests does not leave one process finishing alone.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUIREMENTS=requirements-dev.txt source scripts/setup_env.sh
python -m pytest -q -n 2 --dist worksteal "$@"
