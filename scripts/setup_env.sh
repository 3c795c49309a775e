#!/usr/bin/env bash
# Creates .venv (if missing) and installs requirements.txt into it, plus the
# files named in REQUIREMENTS (scripts/test.sh adds requirements-dev.txt;
# requirements-bench.txt is optional).  Sourced by the other scripts:
# afterwards `python` is the venv's python.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON_BIN:-python3.11}"
command -v "$PYTHON_BIN" >/dev/null 2>&1 || PYTHON_BIN=python3
if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating virtual environment $VENV"
  "$PYTHON_BIN" -m venv "$VENV"
fi
# Each file is installed once, and again only when it changed: running the
# quickstart does not need the test requirements (PyTorch, transformers).
for req in requirements.txt ${REQUIREMENTS:-}; do
  STAMP="$VENV/.installed-$req.sha256"
  WANT="$(sha256sum "$ROOT/$req" | cut -d' ' -f1)"
  if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    echo "Installing $req into $VENV (first run takes a minute or two)"
    # Not --no-compile: it saves a little here, but where
    # PYTHONDONTWRITEBYTECODE is set (as on this project's machines) every
    # later process then compiles TensorFlow's modules again, at each import.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      -r "$ROOT/requirements.txt" -r "$ROOT/$req"
    echo "$WANT" > "$STAMP"
  fi
done
export PATH="$VENV/bin:$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
