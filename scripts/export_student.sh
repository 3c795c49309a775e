#!/usr/bin/env bash
# Exports the distilled student's last checkpoint for TF Serving:
# EXPORT_DIR/<N>/ with serving_default, predict_text and intermediate.
#
#   bash scripts/export_student.sh [extra run_classifier_distill.py flags]
#
# The settings come from the run's record, OUTPUT_DIR/run_config.json,
# written when the student was trained (the teacher is not loaded).
set -euo pipefail
# Relative paths are the caller's; the defaults live in the project.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# The settings' checks come first: they fail before any install or Python.
source "$ROOT/scripts/student_settings.sh"
check_run_record student distill.sh "$@"

source "$ROOT/scripts/setup_env.sh"

python "$ROOT"/bert/run_classifier_distill.py \
  --do_export \
  --output_dir="$OUTPUT_DIR" \
  --export_dir="$EXPORT_DIR" \
  "$@"
