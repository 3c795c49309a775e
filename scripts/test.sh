#!/usr/bin/env bash
# Sets up .venv and runs the test suite.  Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
REQUIREMENTS=requirements-dev.txt source scripts/setup_env.sh
python -m pytest -q "$@"
