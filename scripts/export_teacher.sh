#!/usr/bin/env bash
# Exports the teacher's last checkpoint as a SavedModel version for TF Serving:
# EXPORT_DIR/<N>/ (N = next integer) with serving_default, predict_text and
# intermediate signatures.
#
#   bash scripts/export_teacher.sh [extra run_classifier.py flags]
#
# The variables must describe the model as it was trained (same defaults as
# scripts/train_teacher_model.sh): the vocab, config, task and max_seq_length
# go into the export.
set -euo pipefail
# Relative paths are the caller's; the defaults live in the project.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"

source "$ROOT/scripts/teacher_settings.sh"

python "$ROOT"/bert/run_classifier.py \
  --task_name="$TASK_NAME" \
  --do_export \
  --data_dir="$DATA_DIR" \
  --vocab_file="$VOCAB_FILE" \
  --bert_config_file="$BERT_CONFIG_FILE" \
  --max_seq_length="$MAX_SEQ_LENGTH" \
  --output_dir="$OUTPUT_DIR" \
  --export_dir="$EXPORT_DIR" \
  "$@"
