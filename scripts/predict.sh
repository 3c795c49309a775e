#!/usr/bin/env bash
# Classifies lines of text with an exported model, printing
# label<TAB>probability<TAB>text per line.
#
#   echo "质量很好，非常满意" | bash scripts/predict.sh
#   EXPORT_DIR=export/teacher bash scripts/predict.sh --input_file=reviews.txt
#   bash scripts/predict.sh --use_ids --all_probabilities < reviews.txt
#
# EXPORT_DIR is a version directory or a base path (its highest version).
# Text goes through the predict_text signature (tokenised in the graph);
# --use_ids tokenises in Python and calls serving_default.
set -euo pipefail
# Relative paths are the caller's; the defaults live in the project.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"

EXPORT_DIR="${EXPORT_DIR:-$ROOT/export/student}"
BATCH_SIZE="${BATCH_SIZE:-64}"

python -m bert.predict --model="$EXPORT_DIR" --batch_size="$BATCH_SIZE" "$@"
