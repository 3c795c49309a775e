#!/usr/bin/env bash
# Exports the distilled student's last checkpoint for TF Serving:
# EXPORT_DIR/<N>/ with serving_default, predict_text and intermediate.
#
#   bash scripts/export_student.sh [extra run_classifier_distill.py flags]
#
# The variables must describe the student as it was trained (same defaults as
# scripts/distill.sh); the teacher is only checked for compatibility and
# recorded in export_info.json.
set -euo pipefail
# Relative paths are the caller's; the defaults live in the project.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"

source "$ROOT/scripts/student_settings.sh"

python "$ROOT"/bert/run_classifier_distill.py \
  --task_name="$TASK_NAME" \
  --do_export \
  --teacher_model="$TEACHER_DIR" \
  --data_dir="$DATA_DIR" \
  --vocab_file="$VOCAB_FILE" \
  --bert_config_file="$STUDENT_CONFIG" \
  --max_seq_length="$MAX_SEQ_LENGTH" \
  --output_dir="$OUTPUT_DIR" \
  --export_dir="$EXPORT_DIR" \
  "$@"
