#!/usr/bin/env bash
# Exports the teacher's last checkpoint as a SavedModel version for TF Serving:
# EXPORT_DIR/<N>/ (N = next integer) with serving_default, predict_text and
# intermediate signatures.
#
#   bash scripts/export_teacher.sh [extra run_classifier.py flags]
#
# The settings come from the run's record, OUTPUT_DIR/run_config.json,
# written when the teacher was trained.
set -euo pipefail
# Relative paths are the caller's; the defaults live in the project.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# The settings' checks come first: they fail before any install or Python.
source "$ROOT/scripts/teacher_settings.sh"
check_run_record teacher train_teacher_model.sh "$@"

source "$ROOT/scripts/setup_env.sh"

python "$ROOT"/bert/run_classifier.py \
  --do_export \
  --output_dir="$OUTPUT_DIR" \
  --export_dir="$EXPORT_DIR" \
  "$@"
